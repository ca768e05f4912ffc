"""The demo model: a small ResNet the project trains itself (``visionnet train-demo``).

It lets the whole system run where no model hub can be reached. One directory
serves as both classifier (its head) and embedder (its pooled, penultimate
features), saved with ``save_pretrained`` so it loads through exactly the code
a hub model does. Trained weights ship in ``SHIPPED_DEMO_DIR``; tests build
tiny random ones from the same config, and a config flag
(``visionnet_random_weights``) makes results say when weights are random.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Trained on CIFAR-10's training split; see training.json beside the weights.
SHIPPED_DEMO_DIR = Path(__file__).resolve().parent / "weights" / "demo-cifar10"

# CIFAR-10's classes, in the order of their sorted folder names.
DEMO_LABELS = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
RANDOM_WEIGHTS_FLAG = "visionnet_random_weights"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def demo_config(
    labels: Sequence[str],
    *,
    hidden_sizes: Sequence[int] = (32, 64, 128, 256),
    depths: Sequence[int] | None = None,
) -> Any:
    """A ResNet of basic blocks: small enough to train on a CPU, fast to serve."""
    from transformers import ResNetConfig

    return ResNetConfig(  # type: ignore[call-arg]
        embedding_size=hidden_sizes[0],
        hidden_sizes=list(hidden_sizes),
        depths=list(depths) if depths is not None else [1] * len(hidden_sizes),
        layer_type="basic",
        downsample_in_first_stage=False,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )


def demo_processor(
    image_size: int,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Any:
    """Resize to a square and normalise: the PIL processor needs no torchvision."""
    from transformers import ViTImageProcessorPil

    return ViTImageProcessorPil(
        size={"height": image_size, "width": image_size},
        image_mean=list(mean),
        image_std=list(std),
    )


def build_demo_model(
    out_dir: Path,
    *,
    image_size: int = 64,
    hidden_sizes: tuple[int, ...] = (32, 64, 128, 256),
    depths: tuple[int, ...] | None = None,
    labels: tuple[str, ...] = DEMO_LABELS,
    seed: int = 0,
) -> Path:
    """Write a randomly initialised demo-architecture model, flagged as random, to ``out_dir``.

    Tests use this for a tiny model built from a config and loaded by path;
    benchmarks for an untrained baseline of the shipped architecture.
    """
    import torch
    from transformers import ResNetForImageClassification

    torch.manual_seed(seed)
    config = demo_config(labels, hidden_sizes=hidden_sizes, depths=depths)
    setattr(config, RANDOM_WEIGHTS_FLAG, True)
    model = ResNetForImageClassification(config)
    model.eval()  # type: ignore[no-untyped-call]
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    demo_processor(image_size).save_pretrained(out_dir)
    return out_dir
