"""Model loading through the real transformers code, on small models saved to disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import build_tiny_model
from tests.helpers import make_image
from workers.models.classifier import Classifier
from workers.models.embedder import Embedder
from workers.models.loading import ModelUnavailableError
from workers.models.registry import ModelRegistry


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "m")


def test_embedder_vectors_are_unit_length_and_deterministic(model_dir: Path) -> None:
    emb = Embedder(str(model_dir), "cpu")
    images = [make_image(i) for i in range(3)]
    a, b = emb.embed(images), emb.embed(images[:1])
    assert a.shape == (3, 16) and a.dtype == np.float32
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert np.allclose(a[0], b[0], atol=1e-5)  # batch composition does not change a vector


def test_classifier_top_k(model_dir: Path) -> None:
    clf = Classifier(str(model_dir), "cpu")
    preds = clf.predict([make_image(1)], top_k=20)[0]
    assert len(preds) == 10  # k is capped at the number of labels
    assert abs(sum(p.score for p in preds) - 1.0) < 1e-4
    assert clf.info["random_weights"] is True


def test_registry_loads_once(model_dir: Path) -> None:
    reg = ModelRegistry(str(model_dir), str(model_dir), "auto", offline=True)
    assert reg.embedder() is reg.embedder()
    assert reg.classifier() is reg.classifier()
    assert reg.device == "cpu"


def test_unreachable_hub_model_names_the_model_and_the_fix() -> None:
    with pytest.raises(ModelUnavailableError) as err:
        Classifier("google/vit-base-patch16-224", "cpu", offline=True)
    message = str(err.value)
    assert "google/vit-base-patch16-224" in message
    assert "VISIONNET_MODELS__CLASSIFIER" in message and "directory" in message


def test_missing_local_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        Embedder(str(tmp_path / "nope"), "cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelUnavailableError, match="not a saved transformers model"):
        Embedder(str(tmp_path / "empty"), "cpu")


def test_demo_model_builds_once_and_loads(tmp_path: Path) -> None:
    from workers.models.demo import DEMO_LABELS, ensure_demo_model

    target = tmp_path / "models" / "demo"
    assert ensure_demo_model(target) == target
    stamp = (target / "model.safetensors").stat().st_mtime_ns
    ensure_demo_model(target)  # already there: not rebuilt
    assert (target / "model.safetensors").stat().st_mtime_ns == stamp
    assert [p.name for p in target.parent.iterdir()] == ["demo"]  # no staging left behind
    clf = Classifier(str(target), "cpu")
    labels = {p.label for p in clf.predict([make_image(3)], top_k=3)[0]}
    assert labels <= set(DEMO_LABELS)
