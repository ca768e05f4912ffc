"""The training recipe: airbench94's ingredients, as one record saved with the weights.

Patch whitening, BatchNorm shifts with a raised learning rate, label smoothing,
Nesterov SGD on a summed loss with a triangular schedule, alternating flips and
2-pixel translations, and lookahead weight averaging are what let a small
network reach about 94% on CIFAR-10 in ten epochs (KellerJordan/cifar10-airbench).
The numbers below are airbench94's, named as it names them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Recipe:
    image_size: int = 32
    widths: tuple[int, ...] = (64, 256, 256)
    epochs: float = 10.0
    batch_size: int = 1024
    lr: float = 11.5  # per 1,024 examples, for the summed loss
    momentum: float = 0.85
    weight_decay: float = 0.0153  # per 1,024 examples, decoupled from the learning rate
    bias_scaler: float = 64.0  # BatchNorm and whitening shifts learn this much faster
    label_smoothing: float = 0.2
    whiten_bias_epochs: float = 3.0  # then the whitening layer is frozen whole
    translate: int = 2  # pixels, from a reflected border
    lookahead_every: int = 5  # steps between lookahead averages
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.widths:
            raise ValueError("widths needs one entry per conv group")
        if self.epochs <= 0 or self.batch_size < 1 or self.image_size < 8:
            raise ValueError("epochs and batch_size must be positive and image_size at least 8")
