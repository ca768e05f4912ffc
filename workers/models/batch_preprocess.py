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

Two recipes take this path: resize to a fixed size, rescale and normalise
(ViT's, the demo model's), and resize the shortest edge, crop the centre, rescale
and normalise (CLIP's). The PIL work per picture is then one resize and one crop
of a view; the processor's own path converts each picture to float arrays and
back for every step. Any other recipe (padding, longest edge, a crop larger than
the resized picture) keeps its own processor.
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
# Processor classes that resize the shortest edge and crop the centre (CLIP's).
_SHORTEST_EDGE_CROP_RECIPES = frozenset(
    {"CLIPImageProcessor", "CLIPImageProcessorPil", "CLIPImageProcessorFast"}
)


def _side(size: Any, key: str) -> Any:
    """A plain dict in older processors, transformers' SizeDict (attributes) in newer."""
    return size.get(key) if isinstance(size, dict) else getattr(size, key, None)


def shortest_edge_size(width: int, height: int, edge: int) -> tuple[int, int]:
    """(width, height) with the shorter side ``edge``, rounded as transformers rounds it
    (``get_resize_output_image_size``: the longer side truncated)."""
    if width <= height:
        return edge, int(edge * height / width)
    return int(edge * width / height), edge


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
        shortest_edge: int | None = None,
    ) -> None:
        # The output size; with ``shortest_edge`` the crop taken from the resized centre.
        self.size = (width, height)
        self.shortest_edge = shortest_edge
        self.resample = resample
        self.rescale = rescale
        self.mean = list(mean) if mean is not None else None
        self.std = list(std) if std is not None else None

    @classmethod
    def for_processor(cls, processor: Any) -> BatchPreprocessor | None:
        """The batch path for ``processor``, or None where its steps are others."""
        name = type(processor).__name__
        if not getattr(processor, "do_resize", False) or getattr(processor, "do_pad", False):
            return None
        size = getattr(processor, "size", None)
        edge = None
        if name in _FIXED_SIZE_RECIPES:
            width, height = _side(size, "width"), _side(size, "height")
        elif name in _SHORTEST_EDGE_CROP_RECIPES and getattr(processor, "do_center_crop", False):
            crop = getattr(processor, "crop_size", None)
            edge = _side(size, "shortest_edge")
            width, height = _side(crop, "width"), _side(crop, "height")
            if _side(size, "longest_edge") or not edge or max(width or 0, height or 0) > edge:
                return None  # the processor would cap the long side or pad the crop
        else:
            return None
        if not width or not height:
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
            shortest_edge=int(edge) if edge else None,
        )

    def sized(self, rgb: Image.Image) -> Image.Image:
        """One picture at the output size: resized, and cropped where the recipe crops."""
        if self.shortest_edge is None:
            return rgb if rgb.size == self.size else rgb.resize(self.size, self.resample)
        target = shortest_edge_size(rgb.width, rgb.height, self.shortest_edge)
        resized = rgb if rgb.size == target else rgb.resize(target, self.resample)
        left = (resized.width - self.size[0]) // 2
        top = (resized.height - self.size[1]) // 2
        return resized.crop((left, top, left + self.size[0], top + self.size[1]))

    def __call__(self, images: Sequence[Any], device: str, dtype: Any) -> Any:
        """``pixel_values`` (N, 3, H, W) on ``device`` in ``dtype``, as the processor makes them."""
        import torch

        pictures = []
        for image in images:
            rgb = image if image.mode == "RGB" else image.convert("RGB")
            pictures.append(np.asarray(self.sized(rgb)))
        batch = torch.from_numpy(np.stack(pictures)).to(device)  # uint8 across to the device
        pixels = batch.permute(0, 3, 1, 2).float()
        if self.rescale is not None:
            pixels = pixels * self.rescale
        if self.mean is not None and self.std is not None:
            mean = torch.tensor(self.mean, device=pixels.device).view(1, 3, 1, 1)
            std = torch.tensor(self.std, device=pixels.device).view(1, 3, 1, 1)
            pixels = (pixels - mean) / std
        return pixels.contiguous().to(dtype)
