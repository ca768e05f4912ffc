"""A tiny random-weights model in the demo architecture, built from a config and saved to disk.

Tests load it by path through the same code that loads real models. Its config
carries the random-weights flag, so results made with it say so.
"""

from __future__ import annotations

from pathlib import Path

from visionnet.training.architecture import demo_config, demo_processor
from visionnet.workers.models.info import RANDOM_WEIGHTS_FLAG
from visionnet.workers.models.shipped import DEMO_LABELS


def build_tiny_model(
    out: Path, *, seed: int = 1, hidden_sizes: tuple[int, ...] = (8, 16), image_size: int = 32
) -> Path:
    """Fast by default; wider and at a larger input size it is slow enough to kill mid-task."""
    import torch
    from transformers import ResNetForImageClassification

    torch.manual_seed(seed)
    config = demo_config(DEMO_LABELS, hidden_sizes=hidden_sizes)
    setattr(config, RANDOM_WEIGHTS_FLAG, True)
    model = ResNetForImageClassification(config)
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    demo_processor(image_size).save_pretrained(out)
    return out
