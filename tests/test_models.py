"""Model loading through the real transformers code, on small models saved to disk."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.helpers import float_dtypes, make_image
from tests.tiny_model import build_tiny_model
from visionnet.config.settings import Settings
from visionnet.workers.models.classifier import Classifier
from visionnet.workers.models.cpu_flags import cpu_flags, has_fast_bf16
from visionnet.workers.models.embedder import Embedder
from visionnet.workers.models.loading import ModelUnavailableError
from visionnet.workers.models.registry import ModelRegistry
from visionnet.workers.models.runtime import Runtime


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


def test_bf16_runs_the_matmuls_in_bf16_and_the_rest_in_fp32(model_dir: Path) -> None:
    import torch

    images = [make_image(i) for i in range(4)]
    exact = Embedder(str(model_dir), "cpu", runtime=Runtime(precision="fp32")).embed(images)
    half = Embedder(str(model_dir), "cpu", runtime=Runtime(precision="bf16"))
    assert half.dtype == half.autocast_dtype == torch.bfloat16
    dtypes = {type(m).__name__: p.dtype for m in half.model.modules() for p in m.parameters(False)}
    assert dtypes["Conv2d"] == torch.bfloat16
    assert dtypes["BatchNorm2d"] == torch.float32  # norms (and the stream) stay fp32
    vectors = half.embed(images)
    assert vectors.dtype == np.float32  # stored as float32 whatever the model ran in
    cosine = (vectors * exact).sum(axis=1)
    assert (cosine > 0.98).all() and not np.array_equal(vectors, exact)
    # Measured at load against the fp32 weights it was cast from (agreement.py).
    assert half.agreement is not None and half.agreement["cosine_min"] > 0.98
    # auto: bf16 on a CPU with AVX512-BF16/AMX (this project's), else fp32 weights.
    fast = has_fast_bf16(cpu_flags())
    assert Runtime().dtype("cpu") == (torch.bfloat16 if fast else torch.float32)


@pytest.mark.parametrize("gate", [0.0, 1.01])
def test_auto_keeps_bf16_only_where_its_recall_clears_the_gate(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch, gate: float
) -> None:
    """auto's bf16 is measured at load; under the gate the fp32 weights come back whole."""
    import torch

    import visionnet.workers.models.base as base
    import visionnet.workers.models.runtime as runtime

    images = [make_image(i) for i in range(4)]
    exact = Embedder(str(model_dir), "cpu", runtime=Runtime(precision="fp32")).embed(images)
    monkeypatch.setattr(runtime, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    monkeypatch.setattr(base, "AUTO_PROBE_RECALL", gate)
    auto = Embedder(str(model_dir), "cpu", runtime=Runtime())
    if gate > 1:  # no recall clears it: fp32, bit for bit the explicit fp32's vectors
        assert auto.choice.label == "torch/fp32" and auto.agreement is None
        assert "recall@10" in auto.choice.reason and "fp32 instead" in auto.choice.reason
        assert auto.autocast_dtype is None
        assert {p.dtype for p in auto.model.parameters()} == {torch.float32}
        assert np.array_equal(auto.embed(images), exact)
    else:
        assert auto.choice.label == "torch/bf16" and auto.agreement is not None
        assert not np.array_equal(auto.embed(images), exact)
    assert auto.info["precision"] == auto.choice.precision
    # An explicit bf16 is kept whatever it measures.
    assert Embedder(str(model_dir), "cpu", runtime=Runtime(precision="bf16")).dtype == (
        torch.bfloat16
    )


def test_a_kept_agreement_is_reused_and_other_weights_are_measured_again(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker's restart reads the agreement its first load measured (agreement_cache.py)."""
    import torch

    import visionnet.workers.models.base as base
    import visionnet.workers.models.runtime as runtime

    images = [make_image(i) for i in range(4)]
    kept = tmp_path / "agreement"
    half = Runtime(precision="bf16", agreement_cache=str(kept))
    first = Embedder(str(model_dir), "cpu", runtime=half)
    assert first.agreement is not None and len(list(kept.glob("*.json"))) == 1
    # An auto load that falls under the gate keeps its (failing) measure too.
    monkeypatch.setattr(runtime, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    monkeypatch.setattr(base, "AUTO_PROBE_RECALL", 1.01)
    auto = Runtime(agreement_cache=str(kept))
    fell_back = Embedder(str(model_dir), "cpu", runtime=auto)
    assert fell_back.choice.label == "torch/fp32" and len(list(kept.glob("*.json"))) == 2

    def measured(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("measured again")

    monkeypatch.setattr(base, "measure_change", measured)
    again = Embedder(str(model_dir), "cpu", runtime=half)
    assert again.agreement == first.agreement and again.autocast_dtype == torch.bfloat16
    assert np.array_equal(again.embed(images), first.embed(images))
    fp32_again = Embedder(str(model_dir), "cpu", runtime=auto)
    assert fp32_again.choice.reason == fell_back.choice.reason
    assert {p.dtype for p in fp32_again.model.parameters()} == {torch.float32}
    assert np.array_equal(fp32_again.embed(images), fell_back.embed(images))
    # Other weights: another key, measured.
    other = build_tiny_model(tmp_path / "other", seed=9)
    with pytest.raises(AssertionError, match="measured again"):
        Embedder(str(other), "cpu", runtime=half)


def test_conv_nets_run_channels_last_on_the_cpu_with_the_same_vectors(model_dir: Path) -> None:
    import torch

    images = [make_image(i) for i in range(4)]
    fast = Embedder(str(model_dir), "cpu")  # the default runtime
    plain = Embedder(str(model_dir), "cpu", runtime=Runtime(channels_last=False))
    assert fast.memory_format == torch.channels_last and plain.memory_format is None
    assert fast.pixel_values(images)["pixel_values"].is_contiguous(
        memory_format=torch.channels_last
    )
    conv = next(m for m in fast.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert np.allclose(fast.embed(images), plain.embed(images), atol=1e-5)


def test_a_prepared_batch_is_not_preprocessed_again(model_dir: Path) -> None:
    """An index job's reader threads preprocess ahead; the model then only runs the batch."""
    images = [make_image(i) for i in range(5)]
    emb = Embedder(str(model_dir), "cpu")
    prepared = emb.prepare(images)
    calls: list[int] = []
    preprocess = emb.preprocess

    def counting(batch: Sequence[Any]) -> dict[str, Any]:
        calls.append(len(batch))
        return preprocess(batch)

    emb.preprocess = counting  # type: ignore[method-assign]
    assert np.array_equal(emb.embed(prepared), emb.embed(images))
    assert calls == [5]  # the plain list only
    # Another model's batch, or a slice of one (a batch split after running out of
    # memory), is preprocessed as usual.
    other = Embedder(str(model_dir), "cpu")
    assert np.allclose(other.embed(prepared), emb.embed(images), atol=1e-6)
    part = prepared[:2]
    assert type(part) is list
    assert np.array_equal(emb.embed(part), emb.embed(images[:2]))
    assert calls == [5, 5, 2, 2]


def test_registry_loads_once(model_dir: Path) -> None:
    reg = ModelRegistry("auto", offline=True)
    embedder = reg.get(Embedder, str(model_dir))
    assert reg.get(Embedder, str(model_dir)) is embedder
    classifier = reg.get(Classifier, str(model_dir))
    assert reg.get(Classifier, str(model_dir)) is classifier
    assert classifier is not embedder  # keyed by (kind, ref): one ref, two models
    assert reg.device == "cpu"


def test_builtin_refs_resolve_to_shipped_weights() -> None:
    from visionnet.workers.models.shipped import SHIPPED_DEMO_DIR

    assert Settings(profile="demo").classifier_ref == "builtin:demo-cifar10"  # type: ignore[call-arg]
    embedder = Embedder("builtin:demo-cifar10", "cpu")
    assert embedder.ref == str(SHIPPED_DEMO_DIR)
    assert embedder.name == embedder.info["name"] == "builtin:demo-cifar10"
    with pytest.raises(ModelUnavailableError, match="builtin:demo-cifar10"):
        Classifier("builtin:nope", "cpu")


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


def test_shipped_demo_model_is_trained_fp16_and_loads_like_a_hub_model() -> None:
    import json

    from visionnet.workers.models.shipped import DEMO_LABELS, SHIPPED_DEMO_DIR

    weights = SHIPPED_DEMO_DIR / "model.safetensors"
    assert weights.stat().st_size < 10_000_000
    assert float_dtypes(weights) == {"F16"}
    report = json.loads((SHIPPED_DEMO_DIR / "training.json").read_text())
    assert report["labels"] == list(DEMO_LABELS) and report["train_images"] == 50_000
    # Trained within the 45-minute budget the README states, with the default recipe.
    assert report["timings"]["total_s"] <= 45 * 60 and report["recipe"]["optimizer"] == "muon"

    clf = Classifier(str(SHIPPED_DEMO_DIR), "cpu")
    assert clf.info["random_weights"] is False
    assert list(clf.model.config.id2label.values()) == list(DEMO_LABELS)
    preds = clf.predict([make_image(3), make_image(4)], top_k=3)
    assert all(p.label in DEMO_LABELS for row in preds for p in row)
    vectors = Embedder(str(SHIPPED_DEMO_DIR), "cpu").embed([make_image(3)])
    assert vectors.shape == (1, clf.model.config.hidden_size)
    # A CifarNet (since v2): 32 px whole, registered with the Auto classes, flip-invariant.
    assert clf.model.config.model_type == "visionnet-cifarnet" and clf.input_size == 32
    assert clf.info["flip_invariant"] is True


def _oom_above(model: object, limit: int) -> list[int]:
    """Make the model's forward pass run out of memory above ``limit`` images, as a GPU would."""
    import torch

    module = model.model  # type: ignore[attr-defined]
    forward = module.forward
    sizes: list[int] = []

    def limited(*args: object, **kwargs: object) -> object:
        pixels = kwargs.get("pixel_values", args[0] if args else None)
        batch = int(pixels.shape[0])  # type: ignore[union-attr]
        if batch > limit:
            raise torch.OutOfMemoryError(f"CUDA out of memory (injected above {limit})")
        sizes.append(batch)
        return forward(*args, **kwargs)

    module.forward = limited
    return sizes


def test_out_of_memory_splits_the_batch_and_gives_the_same_results(model_dir: Path) -> None:
    import torch

    images = [make_image(seed) for seed in range(11)]
    reference = Embedder(str(model_dir), "cpu").embed(images)
    expected = Classifier(str(model_dir), "cpu").predict(images, top_k=2)

    embedder = Embedder(str(model_dir), "cpu")
    passes = _oom_above(embedder, 3)
    vectors = embedder.embed(images)
    assert np.abs(vectors - reference).max() <= 1e-5
    assert passes and max(passes) <= 3 and sum(passes) == 11
    assert embedder.max_batch is not None and embedder.max_batch <= 3  # later calls start there

    ahead = Embedder(str(model_dir), "cpu")  # a batch preprocessed by an index job's reader
    passes = _oom_above(ahead, 4)
    assert np.abs(ahead.embed(ahead.prepare(images)) - reference).max() <= 1e-5
    assert max(passes) <= 4 and sum(passes) == 11
    # No room even for a batch's inputs: the reader hands on the plain images.
    preprocess = ahead.preprocess

    def full(batch: Sequence[Any]) -> dict[str, Any]:
        raise torch.OutOfMemoryError("CUDA out of memory (injected in preprocessing)")

    ahead.preprocess = full  # type: ignore[method-assign]
    plain = ahead.prepare_ahead(images)
    assert type(plain) is list and plain == images
    ahead.preprocess = preprocess  # type: ignore[method-assign]
    assert np.abs(ahead.embed(plain) - reference).max() <= 1e-5

    classifier = Classifier(str(model_dir), "cpu")
    _oom_above(classifier, 2)
    got = classifier.predict(images, top_k=2)
    assert [[p.label for p in row] for row in got] == [[p.label for p in row] for row in expected]
    scores = np.array([[p.score for p in row] for row in got])
    assert np.abs(scores - np.array([[p.score for p in row] for row in expected])).max() <= 1e-5

    one = Embedder(str(model_dir), "cpu")
    _oom_above(one, 0)  # not even one image fits: the error is not swallowed
    with pytest.raises(RuntimeError, match="out of memory"):
        one.embed(images[:1])


def test_input_size_is_read_from_the_processor(model_dir: Path) -> None:
    """What the decoder may reduce a large JPEG to (Image.draft) before the processor resizes."""
    assert Embedder(str(model_dir), "cpu").input_size == 32
    assert Classifier("builtin:demo-cifar10", "cpu").input_size == 32


def test_a_large_jpeg_is_decoded_at_reduced_scale_but_never_below_the_input() -> None:
    import io

    from visionnet.workers.model_worker.reader import RawFile, decode

    buf = io.BytesIO()
    make_image(3, size=(640, 480)).save(buf, format="JPEG")
    raw = RawFile("big.jpg", buf.getvalue())
    full, reduced = decode(raw), decode(raw, 64)
    assert not isinstance(full, Exception) and not isinstance(reduced, Exception)
    assert full.size == (640, 480)  # type: ignore[union-attr]
    # libjpeg scales by 1/2, 1/4 or 1/8: 1/4 is the most that keeps both sides >= 64.
    assert reduced.size == (160, 120)  # type: ignore[union-attr]


@pytest.mark.parametrize("flips", ["off", "on"])
def test_one_pass_gives_the_embedders_vectors_and_the_classifiers_labels(
    model_dir: Path, flips: str
) -> None:
    """A ResNet's head reads its pooled output, which is the embedder's vector."""
    from visionnet.workers.models.one_pass import gives_embedder_vectors

    runtime = Runtime(flip_invariant=flips)
    clf = Classifier(str(model_dir), "cpu", runtime=runtime)
    emb = Embedder(str(model_dir), "cpu", runtime=runtime)
    assert clf.flip_invariant is (flips == "on")
    assert gives_embedder_vectors(clf, emb)
    images = [make_image(i) for i in range(5)]
    rows, vectors = clf.predict_with_features(images, top_k=3)
    assert np.allclose(vectors, emb.embed(images), atol=1e-5)
    assert rows == clf.predict(images, top_k=3)


def test_a_classifier_checkpoint_as_embedder_gives_its_cls_token_the_same_at_each_load(
    tmp_path: Path,
) -> None:
    """A ViT classifier's checkpoint has no pooler weights: the embedder returns the
    final CLS token its head reads (not a pooler drawn at random at each load), so
    two loads agree and one pass gives the embedder's vectors."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    from visionnet.workers.models.one_pass import gives_embedder_vectors

    torch.manual_seed(0)
    config = ViTConfig(
        image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=32, num_labels=3,
    )  # fmt: skip
    vit = ViTForImageClassification(config).eval()
    vit.save_pretrained(tmp_path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    fp32 = Runtime(precision="fp32")
    images = [make_image(i, (32, 32)) for i in range(4)]
    first, second = (Embedder(str(tmp_path), "cpu", runtime=fp32) for _ in range(2))
    assert first.model.pooler is None
    vectors = first.embed(images)
    assert np.array_equal(vectors, second.embed(images))
    pixels = first.processor(images=images, return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        cls = vit.vit(pixel_values=pixels).last_hidden_state[:, 0]
    want = torch.nn.functional.normalize(cls, dim=-1).numpy()
    assert np.abs(vectors - want).max() <= 1e-5
    assert gives_embedder_vectors(Classifier(str(tmp_path), "cpu", runtime=fp32), first)


def test_one_pass_needs_one_checkpoint(model_dir: Path, tmp_path: Path) -> None:
    from visionnet.workers.models.one_pass import gives_embedder_vectors

    other = build_tiny_model(tmp_path / "other", seed=7)
    classifier, embedder = Classifier(str(other), "cpu"), Embedder(str(model_dir), "cpu")
    assert not gives_embedder_vectors(classifier, embedder)


def test_batch_preprocessing_gives_the_processors_values(model_dir: Path) -> None:
    """Resize, rescale and normalise as tensor ops (batch_preprocess.py) against the
    processor itself, on pictures of other sizes, one already at size, a gray one."""
    import torch
    from transformers import CLIPImageProcessor

    from visionnet.training.architecture import demo_processor
    from visionnet.workers.models.batch_preprocess import BatchPreprocessor

    images = [make_image(1), make_image(2, (64, 64)), make_image(3, (300, 200)), make_image(4)]
    images.append(make_image(5, (90, 70)).convert("L"))
    images.append(make_image(6, (224, 500)))  # already at the shortest edge: crop only
    clip = CLIPImageProcessor(size={"shortest_edge": 224}, crop_size=224)
    clip_odd = CLIPImageProcessor(size={"shortest_edge": 96}, crop_size={"height": 80, "width": 61})
    for processor in (demo_processor(64), demo_processor(32, mean=(0.4, 0.5, 0.6)), clip, clip_odd):
        batch = BatchPreprocessor.for_processor(processor)
        assert batch is not None
        want = processor(images=[i.convert("RGB") for i in images], return_tensors="pt")
        got = batch(images, "cpu", torch.float32)
        assert got.shape == want["pixel_values"].shape
        assert (got - want["pixel_values"]).abs().max().item() <= 1e-5
    # A recipe with other steps (a crop larger than the resized picture: padding,
    # no crop, a capped long side) keeps its processor.
    assert BatchPreprocessor.for_processor(CLIPImageProcessor(crop_size=300)) is None
    assert BatchPreprocessor.for_processor(CLIPImageProcessor(do_center_crop=False)) is None
    capped = {"shortest_edge": 224, "longest_edge": 300}
    assert BatchPreprocessor.for_processor(CLIPImageProcessor(size=capped)) is None
    # The models take the batch path, and their passes give the processor's results.
    embedder = Embedder(str(model_dir), "cpu")
    assert embedder.batch_preprocess is not None
    vectors = embedder.embed(images[:4])
    embedder.batch_preprocess = None  # the processor's own path
    assert np.abs(embedder.embed(images[:4]) - vectors).max() <= 1e-5
