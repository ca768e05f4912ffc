"""Preprocessing as tensor ops over a uint8 batch, for processors whose steps are known.

Without torchvision (no CPU build of it here) transformers gives its PIL image
processors, which resize, rescale and normalise one picture at a time in numpy.
For the demo model's processor that costs 0.196 ms of CPU per 32x32 picture
against 0.042 ms for the same values (max abs difference 4.8e-7) from one PIL
resize per picture (none when it already has the size) and then tensor
arithmetic over the whole batch; 2.148 against 0.964 ms for full-size photos
(``bench/preprocess.py``, medians of 3). On a GPU the batch crosses to the
device as uint8, a quarter of the float32 bytes, and the arithmetic runs there
(the issue's "resize/normalize of uint8 batches on the device").

Only processors that do exactly resize-to-a-fixed-size, rescale and normalise
(ViT's, the demo model's) take this path; any other (center crops, shortest
edge, padding) keeps its own processor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

# Processor classes whose steps are only resize, rescale and normalise (slow, PIL
# and torchvision variants of one recipe), when their flags say so.
_FIXED_SIZE_RECIPES = frozenset(
    {"ViTImageProcessor", "ViTImageProcessorPil", "ViTImageProcessorFast"}
)


class BatchPreprocessor:
    """The processor's values for a batch of RGB PIL images, as one tensor."""

    def __init__(
        self,
        width: int,
        height: int,
        resample: int,
        rescale: float | None,
        mean: Sequence[float] | None,
        std: Sequence[float] | None,
    ) -> None:
        self.size = (width, height)
        self.resample = resample
        self.rescale = rescale
        self.mean = list(mean) if mean is not None else None
        self.std = list(std) if std is not None else None

    @classmethod
    def for_processor(cls, processor: Any) -> BatchPreprocessor | None:
        """The batch path for ``processor``, or None where its steps are others."""
        if type(processor).__name__ not in _FIXED_SIZE_RECIPES:
            return None
        size = getattr(processor, "size", None)

        def side(key: str) -> Any:
            return size.get(key) if isinstance(size, dict) else getattr(size, key, None)

        width, height = side("width"), side("height")
        if not getattr(processor, "do_resize", False) or not width or not height:
            return None
        normalize = bool(getattr(processor, "do_normalize", False))
        resample = getattr(processor, "resample", Image.Resampling.BILINEAR)
        return cls(
            int(width),
            int(height),
            int(getattr(resample, "value", resample)),
            float(processor.rescale_factor) if getattr(processor, "do_rescale", False) else None,
            processor.image_mean if normalize else None,
            processor.image_std if normalize else None,
        )

    def __call__(self, images: Sequence[Any], device: str, dtype: Any) -> Any:
        """``pixel_values`` (N, 3, H, W) on ``device`` in ``dtype``, as the processor makes them."""
        import torch

        pictures = []
        for image in images:
            rgb = image if image.mode == "RGB" else image.convert("RGB")
            sized = rgb if rgb.size == self.size else rgb.resize(self.size, self.resample)
            pictures.append(np.asarray(sized))
        batch = torch.from_numpy(np.stack(pictures)).to(device)  # uint8 across to the device
        pixels = batch.permute(0, 3, 1, 2).float()
        if self.rescale is not None:
            pixels = pixels * self.rescale
        if self.mean is not None and self.std is not None:
            mean = torch.tensor(self.mean, device=pixels.device).view(1, 3, 1, 1)
            std = torch.tensor(self.std, device=pixels.device).view(1, 3, 1, 1)
            pixels = (pixels - mean) / std
        return pixels.contiguous().to(dtype)
