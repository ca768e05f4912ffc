"""The demo model: a small ResNet the project builds itself.

It lets the whole system run where no model hub can be reached. One directory
serves as both classifier (its head) and embedder (its pooled features), and is
saved with ``save_pretrained`` so it loads through exactly the code a hub model
does. Until trained weights ship, its weights are random, and the config says
so: ``visionnet_random_weights`` travels into every result.
"""

from __future__ import annotations

from pathlib import Path

# CIFAR-10's classes, so that trained weights can later drop in unchanged.
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


def build_demo_model(
    out_dir: Path,
    *,
    image_size: int = 64,
    hidden_sizes: tuple[int, ...] = (32, 64, 128, 256),
    labels: tuple[str, ...] = DEMO_LABELS,
    seed: int = 0,
) -> Path:
    """Write a randomly initialised ResNet classifier and its processor to ``out_dir``."""
    import torch
    from transformers import ResNetConfig, ResNetForImageClassification, ViTImageProcessorPil

    torch.manual_seed(seed)
    config = ResNetConfig(  # type: ignore[call-arg]
        embedding_size=hidden_sizes[0],
        hidden_sizes=list(hidden_sizes),
        depths=[1] * len(hidden_sizes),
        layer_type="basic",
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    setattr(config, RANDOM_WEIGHTS_FLAG, True)
    model = ResNetForImageClassification(config)
    model.eval()  # type: ignore[no-untyped-call]
    processor = ViTImageProcessorPil(
        size={"height": image_size, "width": image_size},
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


def ensure_demo_model(model_dir: Path) -> Path:
    """Build the demo model once; safe when several processes race to do it."""
    if is_built(model_dir):
        return model_dir
    import os
    import shutil
    import tempfile

    model_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".demo-", dir=model_dir.parent))
    build_demo_model(staging)
    try:
        os.replace(staging, model_dir)  # atomic: readers never see half a model
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)  # another process won the race
    return model_dir


def is_built(model_dir: Path) -> bool:
    return (model_dir / "config.json").is_file() and (
        model_dir / "preprocessor_config.json"
    ).is_file()
