"""The model alone for ``bench/cpu_runtime.py``: embedders per setting, their rates, their vectors.

A setting is a (``models.runtime``, ``models.precision``) pair, e.g. ("onnxruntime",
"int8"); the embedder is made the way the model worker makes it (``Runtime``),
so the runtime it ends up on (after any fallback) is the worker's too.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from visionnet.workers.models.embedder import Embedder
from visionnet.workers.models.runtime import Runtime

Setting = tuple[str, str]


def label(setting: Setting) -> str:
    return f"{setting[0]}/{setting[1]}"


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def make_embedder(ref: str, setting: Setting, onnx_cache: Path, threads: int) -> Embedder:
    """An embedder on ``setting``, made while torch has ``threads`` threads.

    An onnxruntime session takes its thread count when it is made (from
    torch's, as in the worker, where the launcher sets it per pass), so a pass
    on 2 threads and two passes on 1 thread each need two embedders.
    """
    fields = {f.name for f in dataclasses.fields(Runtime)}
    options: dict[str, Any] = {"precision": setting[1]}
    if "backend" in fields:
        options["backend"] = setting[0]
    elif setting[0] != "torch":
        raise RuntimeError(f"this checkout has no models.runtime: cannot run {label(setting)}")
    if "onnx_cache" in fields:
        options["onnx_cache"] = str(onnx_cache)
    with torch_threads(threads):
        return Embedder(ref, "cpu", runtime=Runtime(**options))


def runs_on(embedder: Embedder) -> dict[str, str]:
    """What the embedder resolved to, and why (its ``choice``, where the checkout has one)."""
    choice = getattr(embedder, "choice", None)
    if choice is None:
        return {"runs": f"torch/{str(embedder.dtype).removeprefix('torch.')}", "reason": ""}
    return {"runs": str(choice.label), "reason": str(choice.reason)}


def rate(embedder: Embedder, pictures: Sequence[Any], batch: int, passes: int) -> float:
    """Images/s of ``embed`` over ``pictures``: ``passes`` passes at once, each on
    2 / ``passes`` torch threads (how the bulk worker runs an index chunk's passes)."""
    starts = list(range(0, len(pictures), batch))

    def lane(n: int) -> None:
        for b in starts[n::passes]:
            embedder.embed(list(pictures[b : b + batch]))

    with torch_threads(max(1, 2 // passes)):
        began = time.perf_counter()
        lanes = [threading.Thread(target=lane, args=(n,)) for n in range(passes)]
        for thread in lanes:
            thread.start()
        for thread in lanes:
            thread.join()
        return len(pictures) / (time.perf_counter() - began)


def vectors(
    embedder: Embedder, pictures: Sequence[Any], batch: int, passes: int
) -> tuple[NDArray[np.float32], float]:
    """Every picture's vector (in order), two passes at once; and the images/s of the run."""
    starts = list(range(0, len(pictures), batch))
    parts: dict[int, NDArray[np.float32]] = {}

    def lane(n: int) -> None:
        for b in starts[n::passes]:
            parts[b] = embedder.embed(list(pictures[b : b + batch]))

    with torch_threads(max(1, 2 // passes)):
        began = time.perf_counter()
        lanes = [threading.Thread(target=lane, args=(n,)) for n in range(passes)]
        for thread in lanes:
            thread.start()
        for thread in lanes:
            thread.join()
        seconds = time.perf_counter() - began
    return np.concatenate([parts[b] for b in starts]), len(pictures) / seconds


def top_k(queries: NDArray[np.float32], gallery: NDArray[np.float32], k: int) -> NDArray[Any]:
    """Row i: the indexes of the ``k`` gallery vectors nearest to query i (cosine), not i itself."""
    scores = queries @ gallery.T
    np.fill_diagonal(scores, -np.inf)
    return np.argpartition(-scores, k, axis=1)[:, :k]


def agreement(
    reference: NDArray[np.float32], other: NDArray[np.float32], k: int = 10
) -> dict[str, float]:
    """``other``'s vectors against fp32's (``reference``), picture by picture.

    cosine: each picture's two vectors. recall@k, own: the k nearest neighbours
    found among ``other``'s vectors that fp32's search finds too (a collection
    all of ``other``). recall@k, mixed: ``other``'s vectors as queries against
    fp32's vectors as the gallery (a collection that mixes the two).
    """
    cosine = np.sum(reference * other, axis=1)
    truth = top_k(reference, reference, k)

    def recall(found: NDArray[Any]) -> float:
        hits = sum(len(set(a) & set(b)) for a, b in zip(truth, found, strict=True))
        return hits / truth.size

    return {
        "cosine_min": float(cosine.min()),
        "cosine_mean": float(cosine.mean()),
        "recall_at_10_own": recall(top_k(other, other, k)),
        "recall_at_10_mixed": recall(top_k(other, reference, k)),
    }
