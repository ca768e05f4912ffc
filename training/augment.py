"""Batch augmentation on preprocessed tensors: random crop from a reflected border, and flips.

The standard CIFAR pair; done on whole batches in torch so no data-loader
processes compete with training for the CPU.
"""

from __future__ import annotations

from typing import Any


def crop_and_flip(batch: Any, pad: int, generator: Any) -> Any:
    import torch
    import torch.nn.functional as F

    n, _, h, w = batch.shape
    if pad > 0:
        padded = F.pad(batch, (pad, pad, pad, pad), mode="reflect")
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).tolist()
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator).tolist()
        batch = torch.stack(
            [
                padded[i, :, y : y + h, x : x + w]
                for i, (y, x) in enumerate(zip(dy, dx, strict=True))
            ]
        )
    flip = torch.rand(n, generator=generator) < 0.5
    batch[flip] = batch[flip].flip(3)
    return batch
