"""Batch augmentation on preprocessed tensors: translation from a reflected border, and flips.

Done on whole batches in torch so no data-loader processes compete with
training for the CPU.
"""

from __future__ import annotations

from typing import Any


def translate(batch: Any, pad: int, generator: Any) -> Any:
    """Each image shifted by up to ``pad`` pixels each way (reflected border)."""
    import torch
    import torch.nn.functional as F

    if pad <= 0:
        return batch
    n, _, h, w = batch.shape
    padded = F.pad(batch, (pad, pad, pad, pad), mode="reflect")
    shifts = torch.randint(0, (2 * pad + 1) ** 2, (n,), generator=generator)
    out = torch.empty_like(batch)
    for shift in sorted(set(shifts.tolist())):  # one slice per offset, not per image
        y, x = divmod(shift, 2 * pad + 1)
        rows = (shifts == shift).nonzero().flatten()
        out[rows] = padded[rows, :, y : y + h, x : x + w]
    return out


def flip_where(batch: Any, mask: Any) -> Any:
    """Mirror the images where ``mask`` is true (in place)."""
    batch[mask] = batch[mask].flip(3)
    return batch


def alternating_flips(base: Any, epoch: int) -> Any:
    """airbench's alternating flip: a random half in even epochs, the other half in odd ones.

    Every image is seen both ways within two epochs, which random flips only
    promise on average.
    """
    return base ^ bool(epoch % 2)
