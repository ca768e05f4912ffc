"""Where vectors came from: the model says how it runs and how far that is from fp32, and a
collection refuses vectors of another runtime/precision of its model unless mixing is allowed.

A real Milvus Lite (a file of its own), the web app on a private Redis (tests/webapp.py)
and the demo model loaded as a worker loads it, with models.precision "auto".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.webapp import WebApp
from visionnet.core.collections import CollectionRegistry
from visionnet.core.loaded_models import LoadedModels
from visionnet.core.redis_conn import connect
from visionnet.workers.models.agreement import (
    AUTO_PROBE_RECALL,
    PROBES,
    Agreement,
    Outputs,
    may_mix,
    measure,
    probe_pictures,
)
from visionnet.workers.models.embedder import Embedder
from visionnet.workers.models.runtime import Runtime
from visionnet.workers.vectorstore.milvus_store import CollectionMismatchError, VectorStore
from visionnet.workers.vectorstore.staging import StagedChunk, StagingArea


def _agreement(recall: float) -> Agreement:
    return {
        "against": "torch/fp32",
        "probes": 64,
        "cosine_min": 0.999,
        "cosine_mean": 0.9999,
        "recall_at_10": recall,
        "top1": None,
    }


@pytest.fixture
def store(tmp_path: Path) -> VectorStore:
    return VectorStore(str(tmp_path / "milvus.db"))


def another(tmp_path: Path) -> VectorStore:
    """Another process's client of the same store: nothing checked or cached yet."""
    return VectorStore(str(tmp_path / "milvus.db"))


def test_a_collection_refuses_vectors_of_another_runtime_or_precision(
    store: VectorStore, tmp_path: Path
) -> None:
    store.ensure_collection("bf16_only", 4, "m", "torch/bf16")
    other = another(tmp_path)
    with pytest.raises(CollectionMismatchError) as refused:
        other.ensure_collection("bf16_only", 4, "m", "onnxruntime/int8")
    said = str(refused.value)
    assert "torch/bf16" in said and "onnxruntime/int8" in said
    assert "models.allow_mixed_vectors" in said and 'models.precision = "bf16"' in said
    # The same setting goes on writing; the refusal recorded nothing.
    other.ensure_collection("bf16_only", 4, "m", "torch/bf16")
    assert store.info("bf16_only").vectors == ("torch/bf16",)


def test_mixing_needs_the_setting_and_measured_agreement(store: VectorStore) -> None:
    good, poor = _agreement(0.995), _agreement(0.95)
    assert may_mix("torch/bf16", good, allowed=True)
    assert not may_mix("torch/bf16", good, allowed=False)
    assert not may_mix("onnxruntime/int8", poor, allowed=True)
    assert not may_mix("torch/bf16", None, allowed=True)  # not measured: never
    assert may_mix("torch/fp32", None, allowed=True)  # the reference itself

    store.ensure_collection("mixed", 4, "m", "torch/fp32")
    with pytest.raises(CollectionMismatchError):
        store.ensure_collection("mixed", 4, "m", "onnxruntime/int8", may_mix=False)
    store.ensure_collection("mixed", 4, "m", "torch/bf16", may_mix=True)
    assert store.info("mixed").vectors == ("torch/fp32", "torch/bf16")
    assert store.made_by("mixed") == ("torch/fp32", "torch/bf16")


def test_a_collection_made_before_provenance_adopts_the_first_writer(
    store: VectorStore, tmp_path: Path, web: WebApp
) -> None:
    store.ensure_collection("legacy", 4, "m")  # as collections were made before: no label
    assert store.info("legacy").vectors == ()
    store.ensure_collection("legacy", 4, "m", "torch/bf16")
    assert store.info("legacy").vectors == ("torch/bf16",)
    with pytest.raises(CollectionMismatchError):
        another(tmp_path).ensure_collection("legacy", 4, "m", "torch/fp32")
    # The listing shows it, as the writer registers it beside the model.
    CollectionRegistry(connect(web.redis_url)).created(
        "legacy", "m", 4, vectors=store.made_by("legacy")
    )
    shown = web.client.get("/api/v1/collections/legacy").json
    assert shown is not None and shown["vectors"] == ["torch/bf16"]


def test_a_staged_chunk_keeps_its_provenance(web: WebApp) -> None:
    staging = StagingArea(connect(web.redis_url, decode=False), 60, "test-provenance:")
    chunk = StagedChunk(
        job_id="j",
        chunk_no=0,
        collection="c",
        ids=["a"],
        paths=["/a.jpg"],
        sizes=[1],
        vectors=np.ones((1, 4), np.float32),
        model="m",
        skipped=0,
        errors=[],
        provenance="onnxruntime/int8",
        may_mix=True,
    )
    staging.put(chunk)
    back = staging.get("j", 0)
    assert back is not None and (back.provenance, back.may_mix) == ("onnxruntime/int8", True)
    staging.remove("j", 0)


def test_agreement_of_identical_and_of_unrelated_outputs() -> None:
    pictures = probe_pictures(32, side=16)
    assert len(pictures) == 32 and pictures[0].size == (16, 16)
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((32, 8)).astype(np.float32)
    same = measure(Outputs(vectors, np.arange(32)), Outputs(vectors.copy(), np.arange(32)))
    assert same["cosine_min"] == pytest.approx(1.0) and same["recall_at_10"] == 1.0
    assert same["top1"] == 1.0
    shuffled = measure(Outputs(vectors), Outputs(vectors[rng.permutation(32)]))
    assert shuffled["recall_at_10"] < 0.9 and shuffled["top1"] is None


def test_models_api_says_runtime_precision_reason_and_agreement(web: WebApp) -> None:
    """The demo model as a worker loads it with models.precision "auto"."""
    model = Embedder("builtin:demo-cifar10", "cpu", runtime=Runtime())
    chosen = Runtime().choice("cpu")
    loaded = LoadedModels(connect(web.redis_url))
    loaded.publish("embedder", dict(model.info))
    try:
        body = web.client.get("/api/v1/models").json
    finally:
        connect(web.redis_url).delete("visionnet:models")
    assert body is not None
    shown = body["embedder"]
    assert (shown["runtime"], shown["precision"]) == (model.choice.runtime, model.choice.precision)
    assert shown["runtime_reason"] == model.choice.reason
    if model.choice.label == "torch/fp32":
        assert shown["agreement"] is None
        if chosen.label == "torch/bf16":  # picked by auto, then under the gate at load
            reason = shown["runtime_reason"]
            assert "recall@10" in reason and "fp32 instead" in reason
    else:  # measured at load against the fp32 weights, and clearing the gate
        agreement = shown["agreement"]
        assert agreement["against"] == "torch/fp32" and agreement["probes"] == PROBES
        assert agreement["cosine_min"] > 0.99 and agreement["recall_at_10"] >= AUTO_PROBE_RECALL
    if chosen.label == "torch/bf16":  # what this project's CPU (AVX512-BF16) picks
        assert "AVX512-BF16" in shown["runtime_reason"]
