"""Image folders for the benchmarks: list them, and make many distinct photos from a few."""

from __future__ import annotations

from pathlib import Path

from PIL import Image


def images_under(folder: Path) -> list[Path]:
    exts = {".jpg", ".jpeg", ".png"}
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in exts)


def expand_photos(originals: list[Path], count: int, out: Path) -> Path:
    """``count`` JPEGs, each an original re-cropped by a few pixels: no two share an id."""
    out.mkdir(parents=True, exist_ok=True)
    for n in range(count):
        src = originals[n % len(originals)]
        shift = 1 + n // len(originals)
        with Image.open(src) as im:
            rgb = im.convert("RGB")
            w, h = rgb.size
            rgb.crop((shift, shift, w - shift, h)).save(out / f"{n:05d}.jpg", quality=90)
    return out
