"""onnxruntime (fp32 and int8) against torch fp32 on the tiny test models and the demo model.

Tolerances, measured on these models: fp32 is the same arithmetic in another
order (vectors within 1e-6, asserted at 1e-4). int8 (dynamic quantization of
MatMul/Gemm weights) moved the tiny CLIP's unit vectors by up to 0.016 (cosine
>= 0.9997) and left the demo net's vectors alone (its convolutions stay fp32;
only its head is quantized), so int8 is asserted at cosine >= 0.999.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.tiny_model import build_tiny_clip, build_tiny_model
from visionnet.workers.models.agreement import probe_pictures
from visionnet.workers.models.classifier import Classifier
from visionnet.workers.models.embedder import Embedder
from visionnet.workers.models.one_pass import gives_embedder_vectors
from visionnet.workers.models.onnx_cache import META_FILE, MODEL_FILE
from visionnet.workers.models.onnx_forward import OrtForward
from visionnet.workers.models.runtime import Runtime
from visionnet.workers.models.shipped import SHIPPED_DEMO_DIR

pytest.importorskip("onnxruntime")
TORCH = Runtime(backend="torch", precision="fp32")
FP32_ATOL = 1e-4
INT8_COSINE = 0.999
PICTURES = probe_pictures(16, side=32)
WORDS = ["a photo of a red dog", "blue sky"]


def on_ort(precision: str, cache: Path) -> Runtime:
    return Runtime(backend="onnxruntime", precision=precision, onnx_cache=str(cache))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    root = tmp_path_factory.mktemp("onnx-models")
    torch.manual_seed(0)
    config = ViTConfig(
        image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=32, num_labels=3,
    )  # fmt: skip
    ViTForImageClassification(config).save_pretrained(root / "vit")
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(root / "vit")
    return {
        "vit": root / "vit",
        "clip": build_tiny_clip(root / "clip"),
        "demo": SHIPPED_DEMO_DIR,
        "cache": root / "onnx",  # shared: int8 quantizes the fp32 test's graph
    }


@pytest.fixture(scope="module")
def torch_fp32(tiny: dict[str, Path]) -> dict[str, Any]:
    """What torch fp32 makes of the probe pictures: the reference."""
    demo, vit, clip = (str(tiny[k]) for k in ("demo", "vit", "clip"))
    clip_model = Embedder(clip, "cpu", runtime=TORCH)
    return {
        "demo_top1": Classifier(demo, "cpu", runtime=TORCH).top1(PICTURES),
        "demo_vectors": Embedder(demo, "cpu", runtime=TORCH).embed(PICTURES),
        "vit_top1": Classifier(vit, "cpu", runtime=TORCH).top1(PICTURES),
        "clip_vectors": clip_model.embed(PICTURES),
        "clip_text": clip_model.embed_text(WORDS),
    }


def assert_close(got: np.ndarray, want: np.ndarray, precision: str) -> None:
    assert got.shape == want.shape
    if precision == "fp32":
        assert np.allclose(got, want, atol=FP32_ATOL)
    else:
        assert float((got * want).sum(1).min()) >= INT8_COSINE


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_onnxruntime_gives_torchs_labels_and_vectors(
    tiny: dict[str, Path], torch_fp32: dict[str, Any], precision: str
) -> None:
    runtime = on_ort(precision, tiny["cache"])
    # The demo model: flip averaging on the doubled batch, labels, one pass for both.
    demo = str(tiny["demo"])
    clf, emb = Classifier(demo, "cpu", runtime=runtime), Embedder(demo, "cpu", runtime=runtime)
    assert isinstance(clf.forward, OrtForward) and isinstance(emb.forward, OrtForward)
    assert clf.choice.label == emb.choice.label == f"onnxruntime/{precision}"
    assert clf.flip_invariant and clf.agreement is not None
    assert clf.top1(PICTURES) == torch_fp32["demo_top1"]
    vectors = emb.embed(PICTURES)
    assert_close(vectors, torch_fp32["demo_vectors"], precision)
    assert gives_embedder_vectors(clf, emb)
    _rows, fused = clf.predict_with_features(PICTURES, top_k=1)
    assert np.allclose(fused, vectors, atol=1e-5)
    # A tiny ViT classifier (attention, LayerNorm, the CLS token read by the head).
    vit = Classifier(str(tiny["vit"]), "cpu", runtime=runtime)
    agree = np.mean(np.array(vit.top1(PICTURES)) == np.array(torch_fp32["vit_top1"]))
    assert agree == 1.0 if precision == "fp32" else agree >= 0.9  # int8: 1.0 measured
    # A tiny CLIP: the projection's vectors on onnxruntime, the text tower still torch.
    clip = Embedder(str(tiny["clip"]), "cpu", runtime=runtime)
    assert isinstance(clip.forward, OrtForward) and clip.info["text_search"]
    assert_close(clip.embed(PICTURES), torch_fp32["clip_vectors"], precision)
    assert np.allclose(clip.embed_text(WORDS), torch_fp32["clip_text"], atol=1e-6)


def test_the_graph_is_reused_and_rebuilt_after_the_weights_change(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    model_dir = build_tiny_model(tmp_path / "tiny")  # a small ResNet: a conv net, fast
    runtime = on_ort("fp32", tmp_path / "cache")
    pictures = probe_pictures(4, side=32)

    first = Embedder(str(model_dir), "cpu", runtime=runtime)
    assert isinstance(first.forward, OrtForward) and first.forward.entry.built
    graph = first.forward.entry.model
    meta = first.forward.entry.meta()
    assert meta["name"] == "local:tiny" and meta["precision"] == "fp32" and meta["build_s"] > 0
    assert {"onnxruntime", "onnx", "torch", "transformers"} <= set(meta["versions"])
    stamp = graph.stat().st_mtime_ns

    again = Embedder(str(model_dir), "cpu", runtime=runtime)
    assert isinstance(again.forward, OrtForward) and not again.forward.entry.built
    assert again.forward.entry.model == graph and graph.stat().st_mtime_ns == stamp
    assert np.array_equal(again.embed(pictures), first.embed(pictures))

    weights = model_dir / "model.safetensors"
    tensors = load_file(weights)
    name = next(k for k in tensors if k.endswith("convolution.weight"))
    tensors[name] = -tensors[name]
    save_file(tensors, weights, metadata={"format": "pt"})
    changed = Embedder(str(model_dir), "cpu", runtime=runtime)
    assert isinstance(changed.forward, OrtForward) and changed.forward.entry.built
    assert changed.forward.entry.model != graph
    assert not graph.exists()  # the older graph of the same model and precision is gone
    assert not np.allclose(changed.embed(pictures), first.embed(pictures), atol=1e-3)
    # The new graph against torch on the new weights, measured at load (agreement.py).
    assert changed.agreement is not None and changed.agreement["cosine_min"] >= 1 - 1e-6
    folders = [p for p in (tmp_path / "cache").iterdir()]
    assert folders == [changed.forward.entry.folder]  # no temporary folder left
    assert sorted(p.name for p in folders[0].iterdir()) == [META_FILE, MODEL_FILE]


def test_a_kept_agreement_is_reused_on_onnxruntime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restart on onnxruntime reads the agreement its first load measured
    (agreement_cache.py), as torch bf16 does; a fallback to torch keeps none."""
    import visionnet.workers.models.base as base
    from visionnet.workers.models import onnx_export

    model_dir = build_tiny_model(tmp_path / "tiny")
    kept = tmp_path / "agreement"
    runtime = Runtime(
        backend="onnxruntime", precision="int8", onnx_cache=str(tmp_path / "cache"),
        agreement_cache=str(kept),
    )  # fmt: skip
    pictures = probe_pictures(4, side=32)
    first = Embedder(str(model_dir), "cpu", runtime=runtime)
    assert first.agreement is not None and len(list(kept.glob("*.json"))) == 1

    def measured(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("measured again")

    monkeypatch.setattr(base, "measure_change", measured)
    again = Embedder(str(model_dir), "cpu", runtime=runtime)
    assert isinstance(again.forward, OrtForward) and again.choice.label == "onnxruntime/int8"
    assert again.agreement == first.agreement
    assert np.array_equal(again.embed(pictures), first.embed(pictures))
    # Another setting of the same tensors is another key: measured (and it raises here).
    with pytest.raises(AssertionError, match="measured again"):
        Embedder(str(model_dir), "cpu", runtime=replace(runtime, precision="fp32"))
    monkeypatch.undo()
    monkeypatch.setattr(onnx_export, "OPSET", 99)  # no export: torch fp32, nothing kept
    other = build_tiny_model(tmp_path / "other", seed=9)
    fell_back = Embedder(str(other), "cpu", runtime=runtime)
    assert fell_back.choice.runtime == "torch" and fell_back.agreement is None
    assert len(list(kept.glob("*.json"))) == 1


def test_a_model_that_does_not_export_runs_on_torch_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from visionnet.workers.models import onnx_export

    monkeypatch.setattr(onnx_export, "OPSET", 99)  # torch's exporter refuses it
    pictures = probe_pictures(4, side=32)
    model_dir = build_tiny_model(tmp_path / "tiny")
    with caplog.at_level(logging.WARNING):
        clf = Classifier(str(model_dir), "cpu", runtime=on_ort("int8", tmp_path / "cache"))
    assert not isinstance(clf.forward, OrtForward)
    assert clf.choice.runtime == "torch" and clf.choice.precision == "fp32"
    assert "torch.onnx.export failed" in clf.choice.reason
    assert "torch.onnx.export failed" in caplog.text
    assert clf.agreement is None and clf.info["runtime"] == "torch"
    assert clf.forward is clf.model and clf.top1(pictures)  # the torch model, still whole
    assert list((tmp_path / "cache").iterdir()) == []  # the failed export left nothing
