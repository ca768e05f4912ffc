"""The training recipe: the fast-CIFAR ingredients, as one record saved with the weights.

Augmentation, label smoothing, SGD with Nesterov momentum and a one-cycle
learning-rate schedule are what let a small network get far in few epochs.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Recipe:
    image_size: int = 64
    hidden_sizes: tuple[int, ...] = (32, 64, 128, 256)
    depths: tuple[int, ...] = (1, 1, 1, 1)
    epochs: int = 30
    batch_size: int = 256
    max_lr: float = 0.2
    weight_decay: float = 5e-4
    momentum: float = 0.9
    label_smoothing: float = 0.1
    warmup_fraction: float = 0.25
    crop_pad_fraction: float = 0.125
    seed: int = 0

    def __post_init__(self) -> None:
        if len(self.depths) != len(self.hidden_sizes):
            raise ValueError("depths and hidden_sizes need one entry per stage")
        if self.epochs < 1 or self.batch_size < 1 or self.image_size < 8:
            raise ValueError("epochs and batch_size must be positive and image_size at least 8")
