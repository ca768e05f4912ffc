"""Reading a ``<class>/<image>`` folder into tensors, through the model's own processor.

Training sees exactly the preprocessing the service applies (the saved image
processor), so accuracy measured here carries over to the API.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})


@dataclass(frozen=True)
class LabeledFiles:
    labels: tuple[str, ...]
    paths: list[Path]
    targets: list[int]


def scan_labeled_folder(root: Path, labels: tuple[str, ...] | None = None) -> LabeledFiles:
    """Class names are the sorted subfolder names, unless ``labels`` fixes them."""
    if not root.is_dir():
        raise ValueError(f"{root} is not a directory")
    if labels is None:
        labels = tuple(sorted(p.name for p in root.iterdir() if p.is_dir()))
    if len(labels) < 2:
        raise ValueError(f"{root} needs at least two class folders, found {list(labels)}")
    paths: list[Path] = []
    targets: list[int] = []
    for index, label in enumerate(labels):
        folder = root / label
        files = (
            sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if folder.is_dir()
            else []
        )
        if not files:
            raise ValueError(f"class folder {folder} has no images")
        paths.extend(files)
        targets.extend([index] * len(files))
    return LabeledFiles(labels, paths, targets)


def decode_rgb(paths: list[Path]) -> list[Image.Image]:
    images = []
    for path in paths:
        with Image.open(path) as img:
            images.append(img.convert("RGB"))
    return images


def channel_stats(images: list[Image.Image]) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of pixels in [0, 1], for the processor's normalisation."""
    total = np.zeros(3)
    total_sq = np.zeros(3)
    count = 0
    for img in images:
        arr = np.asarray(img, dtype=np.float64).reshape(-1, 3) / 255.0
        total += arr.sum(axis=0)
        total_sq += (arr**2).sum(axis=0)
        count += arr.shape[0]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 1e-12))
    return [round(float(m), 4) for m in mean], [round(float(s), 4) for s in std]


def to_tensor(images: list[Image.Image], processor: Any, batch: int = 2048) -> Any:
    """Stack processor outputs: float32 ``(N, 3, H, W)``."""
    import torch

    parts = [
        processor(images=images[i : i + batch], return_tensors="pt")["pixel_values"]
        for i in range(0, len(images), batch)
    ]
    return torch.cat(parts)
