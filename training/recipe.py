"""The training recipes: airbench's ingredients, as one record saved with the weights.

Patch whitening, BatchNorm shifts with their own learning rate, label smoothing,
summed losses, alternating flips and 2-pixel translations are what let a small
network reach about 94% on CIFAR-10 in a few epochs (KellerJordan/cifar10-airbench).
Two optimisers, each with its published numbers:

- ``muon`` (airbench94_muon, the default): the conv filters trained by
  ``FilterMuon``, everything else by Nesterov SGD, learning rates falling linearly
  to zero, batch 2,000, 8 epochs.
- ``sgd`` (airbench94, which trained demo model v2): Nesterov SGD throughout, a
  triangular schedule, lookahead weight averaging, batch 1,024, 9.9 epochs.

``micro_batch`` splits a batch into forward/backward passes whose gradients are
summed before the step: the optimiser sees the published batch, while the CPU
works on pieces that fit its caches (BatchNorm then normalises over each piece).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

Optimizer = Literal["muon", "sgd"]


@dataclass(frozen=True)
class Recipe:
    optimizer: Optimizer = "muon"
    image_size: int = 32
    widths: tuple[int, ...] = (64, 256, 256)
    epochs: float = 8.0
    batch_size: int = 2000
    micro_batch: int = 500
    label_smoothing: float = 0.2
    whiten_bias_epochs: float = 3.0  # then the whitening layer is frozen whole
    translate: int = 2  # pixels, from a reflected border
    seed: int = 0
    # muon: per-step rates (the update's size does not grow with the batch)
    filter_lr: float = 0.24
    filter_momentum: float = 0.6
    bias_lr: float = 0.053  # BatchNorm and whitening shifts
    head_lr: float = 0.67
    decay_per_example: float = 2e-6  # times the batch: SGD groups' weight decay
    # sgd: rates per 1,024 examples for the summed loss
    lr: float = 11.5
    momentum: float = 0.85  # also the SGD groups' momentum under muon
    weight_decay: float = 0.0153  # per 1,024 examples, decoupled from the learning rate
    bias_scaler: float = 64.0  # BatchNorm and whitening shifts learn this much faster
    lookahead_every: int = 5  # steps between lookahead averages

    def __post_init__(self) -> None:
        if self.optimizer not in ("muon", "sgd"):
            raise ValueError(f"optimizer must be muon or sgd, not {self.optimizer!r}")
        if not self.widths:
            raise ValueError("widths needs one entry per conv group")
        if self.epochs <= 0 or self.batch_size < 1 or self.image_size < 8:
            raise ValueError("epochs and batch_size must be positive and image_size at least 8")
        if self.micro_batch < 1:
            raise ValueError("micro_batch must be positive")

    @classmethod
    def named(cls, optimizer: Optimizer, **overrides: Any) -> Recipe:
        """The optimiser's published recipe, with ``overrides`` (None values ignored)."""
        base = cls(optimizer=optimizer)
        if optimizer == "sgd":
            base = replace(base, epochs=9.9, batch_size=1024)
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})
