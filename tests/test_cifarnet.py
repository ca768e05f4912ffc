"""The demo architecture (CifarNet) and the flip-invariance option, on small models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from tests.helpers import make_image
from tests.tiny_model import build_tiny_model
from visionnet.training.architecture import demo_config, demo_processor
from visionnet.workers.models.classifier import Classifier
from visionnet.workers.models.embedder import Embedder
from visionnet.workers.models.runtime import Runtime
from visionnet.workers.models.shipped import DEMO_LABELS


def build_tiny_cifarnet(out: Path, seed: int = 0) -> Path:
    """Random weights, BatchNorm statistics moved off their defaults so a bug would show."""
    import torch

    from visionnet.workers.models.cifarnet import CifarNetForImageClassification

    torch.manual_seed(seed)
    model = CifarNetForImageClassification(demo_config(DEMO_LABELS, widths=(8, 16, 16)))
    model.train()
    with torch.no_grad():
        model(pixel_values=torch.randn(64, 3, 32, 32))  # running mean and var now differ from 0 / 1
    model.eval()
    model.save_pretrained(out)
    demo_processor(32).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def cifarnet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_cifarnet(tmp_path_factory.mktemp("cifarnet"))


def test_saved_cifarnet_loads_through_the_auto_classes(cifarnet_dir: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForImageClassification

    from visionnet.workers.models.cifarnet import register_auto_classes

    register_auto_classes()
    register_auto_classes()  # idempotent
    config = AutoConfig.from_pretrained(cifarnet_dir)
    assert config.model_type == "visionnet-cifarnet" and config.widths == [8, 16, 16]
    head = AutoModelForImageClassification.from_pretrained(cifarnet_dir).eval()
    backbone = AutoModel.from_pretrained(cifarnet_dir).eval()
    assert type(backbone).__name__ == "CifarNetModel"
    x = torch.randn(3, 3, 32, 32)
    with torch.inference_mode():
        features = backbone(pixel_values=x).pooler_output
        logits = head(pixel_values=x).logits
        # The backbone AutoModel loads is the classifier's, weights and statistics included.
        expected = head.classifier(features) * config.logit_scale
    assert features.shape == (3, 16) and logits.shape == (3, 10)
    assert torch.allclose(logits, expected, atol=1e-6)
    assert not torch.allclose(logits[0], logits[1])


def test_whitening_layer_decorrelates_patches() -> None:
    """After whitening, the first half of the channels have (about) identity covariance."""
    import torch

    from visionnet.workers.models.cifarnet import whiten_from_patches

    torch.manual_seed(0)
    # Correlated channels and neighbouring pixels: a smoothed, mixed noise image.
    base = torch.nn.functional.avg_pool2d(torch.randn(200, 3, 34, 34), 3, stride=1)
    images = torch.einsum(
        "ij,njhw->nihw", torch.tensor([[1.0, 0.5, 0.2], [0.3, 1.0, 0.1], [0.0, 0.4, 1.0]]), base
    )
    layer = torch.nn.Conv2d(3, 24, 2, bias=False)
    whiten_from_patches(layer, images, eps=0.0)
    with torch.no_grad():
        out = layer(images)[:, :12].permute(0, 2, 3, 1).reshape(-1, 12)
    covariance = (out.T @ out) / len(out)
    assert torch.allclose(covariance, torch.eye(12), atol=0.05)
    before = images.unfold(2, 2, 1).unfold(3, 2, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, 12)
    assert not torch.allclose((before.T @ before) / len(before), torch.eye(12), atol=0.05)


def test_flip_invariance_is_on_for_the_demo_architecture_and_exact(cifarnet_dir: Path) -> None:
    image = make_image(5)
    mirror = ImageOps.mirror(image)
    embedder = Embedder(str(cifarnet_dir), "cpu")
    assert embedder.flip_invariant and embedder.info["flip_invariant"] is True
    a, b = embedder.embed([image, mirror])
    assert np.abs(a - b).max() <= 1e-5

    classifier = Classifier(str(cifarnet_dir), "cpu")
    assert classifier.flip_invariant
    rows = classifier.predict([image, mirror], top_k=3)
    assert [p.label for p in rows[0]] == [p.label for p in rows[1]]
    assert abs(rows[0][0].score - rows[1][0].score) <= 1e-5

    # Off, the same weights tell the two apart: the invariance is the option's doing.
    plain = Embedder(str(cifarnet_dir), "cpu", runtime=Runtime(flip_invariant="off"))
    assert not plain.flip_invariant and plain.info["flip_invariant"] is False
    c, d = plain.embed([image, mirror])
    assert np.abs(c - d).max() > 1e-3
    # The averaged vector is the normalised mean of the two plain passes' features.
    assert float(a @ ((c + d) / np.linalg.norm(c + d))) > 0.99


def test_flip_invariance_is_off_for_other_models_unless_asked(tmp_path: Path) -> None:
    model_dir = build_tiny_model(tmp_path / "resnet")
    image = make_image(6)
    mirror = ImageOps.mirror(image)
    auto = Embedder(str(model_dir), "cpu")
    assert not auto.flip_invariant
    a, b = auto.embed([image, mirror])
    assert np.abs(a - b).max() > 1e-3
    on = Embedder(str(model_dir), "cpu", runtime=Runtime(flip_invariant="on"))
    c, d = on.embed([image, mirror])
    assert np.abs(c - d).max() <= 1e-5


def test_mirrored_pixels_match_the_mirrored_image(cifarnet_dir: Path) -> None:
    """A flip after preprocessing equals preprocessing the mirror image: the option needs it."""
    classifier = Classifier(str(cifarnet_dir), "cpu")
    image = make_image(7).resize((45, 37), Image.Resampling.BILINEAR)
    pixels = classifier.processor(images=[image], return_tensors="pt")["pixel_values"]
    mirrored = classifier.processor(images=[ImageOps.mirror(image)], return_tensors="pt")[
        "pixel_values"
    ]
    assert np.abs((pixels.flip(-1) - mirrored).numpy()).max() <= 1e-5
