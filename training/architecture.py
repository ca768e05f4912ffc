"""The demo model's architecture: a small ResNet the project trains itself.

One directory serves as both classifier (its head) and embedder (its pooled,
penultimate features), saved with ``save_pretrained`` so it loads through
exactly the code a hub model does. The trained weights ship with the model
worker (``builtin:demo-cifar10``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
