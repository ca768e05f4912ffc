"""Embedded chunks waiting for the store writer, parked in Redis in compact form.

Why not in the Celery message: a chunk of 256 vectors of 768-d is 768 KB of
float32, 1 MB as base64 JSON, and a message is copied several times (queue,
unacked table, prefetch buffer). Here the vectors are raw little-endian
float32 bytes in one hash field, and the message to the writer names the chunk.

Why a shared index of staged chunks: the writer commits *every* staged chunk it
can see (up to a group limit) in one upsert and one flush per collection, then
reports each of them. When it keeps up, groups are one chunk (low latency);
when it falls behind, they grow and the flush cost is shared. Each chunk keeps
its own queue message, so a writer killed mid-group loses nothing: the staged
data stays until its report is recorded, and every message that comes (again)
finds either its staged chunk or, when a group took it, nothing left to do.

Why a bound: the model workers wait while ``limit`` chunks are staged, so a
slow writer slows the embedders instead of filling Redis (backpressure).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

NAMESPACE = "visionnet:"


@dataclass
class StagedChunk:
    """One embedded index chunk: rows to store and the files that produced no row."""

    job_id: str
    chunk_no: int
    collection: str
    ids: list[str]
    paths: list[str]
    sizes: list[int]
    vectors: NDArray[np.float32]
    model: str
    skipped: int
    errors: list[dict[str, Any]]
    # Seconds per stage in the model worker (read, lookup, decode_wait, embed, ...).
    timings: dict[str, float] = field(default_factory=dict)
    # The Celery node that embedded the chunk.
    worker: str = ""
    # Per row: the picture's full size, and its top label and score when the
    # job classified while indexing ("" and 0.0 otherwise).
    widths: list[int] = field(default_factory=list)
    heights: list[int] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    label_scores: list[float] = field(default_factory=list)
    # Files found at a new path whose old path is gone: id -> new path. Their rows
    # are stored already; the writer only rewrites the path (no vector here).
    moves: dict[str, str] = field(default_factory=dict)
    # The runtime/precision that made the vectors (e.g. "torch/bf16"), and whether
    # they may join a collection of another (models.allow_mixed_vectors and the
    # model's recall@10 against fp32 at least 0.99): ``ensure_collection``.
    provenance: str = ""
    may_mix: bool = False

    def metadata(self, i: int) -> dict[str, Any]:
        """Row ``i``'s stored fields beside id and vector."""
        return {
            "path": self.paths[i],
            "size": self.sizes[i],
            "width": self.widths[i] if self.widths else 0,
            "height": self.heights[i] if self.heights else 0,
            "label": self.labels[i] if self.labels else "",
            "label_score": self.label_scores[i] if self.label_scores else 0.0,
        }

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1]) if self.vectors.ndim == 2 else 0

    @property
    def member(self) -> str:
        return member(self.job_id, self.chunk_no)


def member(job_id: str, chunk_no: int) -> str:
    return f"{job_id}:{chunk_no}"


class StagingArea:
    """Staged chunks in Redis (a client with ``decode_responses=False``)."""

    def __init__(self, client: Any, ttl_s: int, namespace: str = NAMESPACE) -> None:
        self._r = client
        self._ttl = ttl_s
        self._prefix = f"{namespace}staged:"
        self._index = f"{namespace}staged-index"

    def put(self, chunk: StagedChunk) -> None:
        meta = {
            "job_id": chunk.job_id,
            "chunk_no": chunk.chunk_no,
            "collection": chunk.collection,
            "ids": chunk.ids,
            "paths": chunk.paths,
            "sizes": chunk.sizes,
            "dim": chunk.dim,
            "model": chunk.model,
            "skipped": chunk.skipped,
            "errors": chunk.errors,
            "timings": chunk.timings,
            "worker": chunk.worker,
            "widths": chunk.widths,
            "heights": chunk.heights,
            "labels": chunk.labels,
            "label_scores": chunk.label_scores,
            "moves": chunk.moves,
            "provenance": chunk.provenance,
            "may_mix": chunk.may_mix,
        }
        data = np.ascontiguousarray(chunk.vectors, dtype="<f4").tobytes()
        key = self._prefix + chunk.member
        pipe = self._r.pipeline(transaction=True)
        pipe.hset(key, mapping={"meta": json.dumps(meta), "vectors": data})
        pipe.expire(key, self._ttl)
        pipe.zadd(self._index, {chunk.member: time.time()})
        pipe.execute()

    def get(self, job_id: str, chunk_no: int) -> StagedChunk | None:
        meta_raw, data = self._r.hmget(self._prefix + member(job_id, chunk_no), ["meta", "vectors"])
        if meta_raw is None or data is None:
            return None
        meta = json.loads(meta_raw)
        dim = int(meta["dim"])
        vectors = np.frombuffer(data, dtype="<f4").reshape(-1, dim) if dim else np.zeros((0, 0))
        return StagedChunk(
            job_id=meta["job_id"],
            chunk_no=int(meta["chunk_no"]),
            collection=meta["collection"],
            ids=meta["ids"],
            paths=meta["paths"],
            sizes=meta["sizes"],
            vectors=vectors.astype(np.float32, copy=False),
            model=meta["model"],
            skipped=int(meta["skipped"]),
            errors=meta["errors"],
            timings=meta.get("timings", {}),
            worker=meta.get("worker", ""),
            widths=meta.get("widths", []),
            heights=meta.get("heights", []),
            labels=meta.get("labels", []),
            label_scores=meta.get("label_scores", []),
            moves=meta.get("moves", {}),
            provenance=meta.get("provenance", ""),
            may_mix=bool(meta.get("may_mix", False)),
        )

    def oldest(self, limit: int) -> list[tuple[str, int]]:
        """(job id, chunk number) of up to ``limit`` staged chunks, oldest first."""
        out = []
        for raw in self._r.zrange(self._index, 0, limit - 1):
            job_id, _, chunk_no = raw.decode().rpartition(":")
            out.append((job_id, int(chunk_no)))
        return out

    def count(self) -> int:
        return int(self._r.zcard(self._index))

    def remove(self, job_id: str, chunk_no: int) -> None:
        """Called once the chunk's report is recorded (or it can never be written)."""
        pipe = self._r.pipeline(transaction=True)
        pipe.delete(self._prefix + member(job_id, chunk_no))
        pipe.zrem(self._index, member(job_id, chunk_no))
        pipe.execute()

    def wait_for_room(
        self, limit: int, keep_waiting: Callable[[], bool], max_wait_s: float
    ) -> float:
        """Block while ``limit`` chunks are staged (backpressure); return seconds waited.

        Gives up after ``max_wait_s`` (kept below the redelivery timeout, so a
        waiting task is never handed to a second worker) or when
        ``keep_waiting`` says no (the job was cancelled).
        """
        start = time.monotonic()
        delay = 0.05
        while self.count() >= limit and keep_waiting():
            if time.monotonic() - start >= max_wait_s:
                break
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
        return time.monotonic() - start
