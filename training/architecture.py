"""Configs the project builds models from: the demo model's CifarNet, and a small ResNet.

The demo model (``builtin:demo-cifar10``) is a CifarNet
(``visionnet.workers.models.cifarnet``) trained by ``visionnet train-demo``.
The small transformers ResNet stands for "any hub model" in the tests: built
from a config with random weights, saved, and loaded by path through the same
code that loads real ones. Both save with ``save_pretrained`` so one directory
serves as classifier (its head) and embedder (its pooled features).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from visionnet.workers.models.info import FLIP_INVARIANT_FLAG

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def label_maps(labels: Sequence[str]) -> dict[str, Any]:
    return {
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "label2id": {label: i for i, label in enumerate(labels)},
    }


def demo_config(
    labels: Sequence[str], *, widths: Sequence[int] = (64, 256, 256), logit_scale: float = 1 / 9
) -> Any:
    """The demo model: a CifarNet, flip-invariant by default."""
    from visionnet.workers.models.cifarnet import CifarNetConfig

    return CifarNetConfig(
        widths=widths,
        logit_scale=logit_scale,
        **label_maps(labels),
        **{FLIP_INVARIANT_FLAG: True},
    )


def resnet_config(
    labels: Sequence[str],
    *,
    hidden_sizes: Sequence[int] = (32, 64, 128, 256),
    depths: Sequence[int] | None = None,
) -> Any:
    """A transformers ResNet of basic blocks (the architecture of demo model v1)."""
    from transformers import ResNetConfig

    return ResNetConfig(
        embedding_size=hidden_sizes[0],
        hidden_sizes=list(hidden_sizes),
        depths=list(depths) if depths is not None else [1] * len(hidden_sizes),
        layer_type="basic",
        downsample_in_first_stage=False,
        **label_maps(labels),
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
