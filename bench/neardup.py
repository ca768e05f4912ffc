"""Near-duplicate copies of an image: what a photo becomes after being shared around."""

from __future__ import annotations

import io
from collections.abc import Callable

from PIL import Image, ImageOps


def _resized(img: Image.Image) -> Image.Image:
    w, h = img.size
    return img.resize((max(1, w // 2), max(1, h // 2)), Image.Resampling.BICUBIC)


def _recompressed(img: Image.Image) -> Image.Image:
    return Image.open(io.BytesIO(encode_jpeg(img, quality=30))).convert("RGB")


def _cropped(img: Image.Image) -> Image.Image:
    """Keep the central 90% of width and height."""
    w, h = img.size
    dx, dy = round(w * 0.05), round(h * 0.05)
    return img.crop((dx, dy, w - dx, h - dy))


TRANSFORMS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "resized_50pct": _resized,
    "recompressed_q30": _recompressed,
    "cropped_90pct": _cropped,
    "flipped": ImageOps.mirror,
}


def encode_jpeg(img: Image.Image, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
