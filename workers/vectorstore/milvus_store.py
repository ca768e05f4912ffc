"""Vector store on Milvus: one collection per name, content-hash ids, upserts.

The same client code serves the embedded ``milvus-lite server`` and a real
Milvus cluster; only the URI differs. An acknowledged upsert survives a crash
unflushed on both (a server's message log; milvus-lite's write-ahead log, replayed
on start), so a flush only seals segments: Milvus Lite's writer flushes when it
pays (``visionnet.workers.store_writer.flush_due``). With Milvus Lite there must be
exactly one writer: see ``visionnet.workers.store_writer.write_chunk``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from pymilvus import DataType, MilvusClient, MilvusException
from pymilvus.client import ts_utils

from visionnet.workers.vectorstore.write_clock import WriteClock

log = logging.getLogger(__name__)
T = TypeVar("T")

ID_LEN = 64
PATH_LEN = 4096
MODEL_LEN = 512
LABEL_LEN = 256
# Stored beside each vector; collections made before a field existed lack it.
METADATA_FIELDS = ("path", "size", "indexed_at", "width", "height", "label", "label_score")
MODEL_PROPERTY = "visionnet.model"
# How the collection's vectors were made, e.g. "torch/bf16" (runtime/precision,
# comma-separated where models.allow_mixed_vectors let a second one in).
VECTORS_PROPERTY = "visionnet.vectors"
UPSERT_BATCH = 1024
# HNSW candidate list of a filtered search (stack facts: a filter matching under
# about 0.1% of rows returns fewer than k hits below about 1,024).
FILTERED_EF = 1024
# The error code of a read on a collection that does not exist (server and Lite).
COLLECTION_NOT_FOUND = 100


class CollectionMismatchError(ValueError):
    """An existing collection holds vectors of another model, dimension or runtime/precision."""


class CollectionNotFoundError(LookupError):
    pass


@dataclass(frozen=True)
class Row:
    id: str
    vector: list[float]
    path: str
    size: int
    model: str
    indexed_at: int
    width: int = 0
    height: int = 0
    label: str = ""
    label_score: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


@dataclass(frozen=True)
class CollectionInfo:
    dim: int
    model: str
    fields: frozenset[str]
    # The runtime/precision labels its vectors came from ("" for a collection made
    # before collections recorded them: the first writer's label is adopted).
    vectors: tuple[str, ...] = ()


@dataclass(frozen=True)
class Hit:
    id: str
    path: str
    score: float
    width: int = 0
    height: int = 0
    label: str = ""


def describe_error(exc: MilvusException) -> str:
    """A down server raises with an empty ``str()``: use code and message."""
    return f"Milvus error {getattr(exc, 'code', '?')}: {getattr(exc, 'message', '') or exc!r}"


class VectorStore:
    def __init__(
        self,
        uri: str,
        token: str = "",
        timeout_s: float = 120.0,
        ef: int = 128,
        search_consistency: str = "Strong",
        clock: WriteClock | None = None,
    ) -> None:
        self._client = MilvusClient(uri=uri, token=token, timeout=timeout_s)
        self._timeout = timeout_s
        self._ef = ef
        self._search_consistency = search_consistency
        # Writes record their timestamp here; "Session" reads wait for exactly that.
        self._clock = clock
        self._loaded: set[str] = set()
        self._verified: dict[str, tuple[int, str, str]] = {}
        self._fields: dict[str, frozenset[str]] = {}
        self._made: dict[str, tuple[str, ...]] = {}

    def names(self) -> list[str]:
        """Every collection in the store."""
        return sorted(self._client.list_collections(timeout=self._timeout))

    def has_collection(self, name: str) -> bool:
        return bool(self._client.has_collection(name, timeout=self._timeout))

    def info(self, name: str) -> CollectionInfo:
        """The collection's vector dimension, model and field names."""
        self._require(name)
        info = self._client.describe_collection(name, timeout=self._timeout)
        dim = next(int(f["params"]["dim"]) for f in info["fields"] if f["name"] == "vector")
        properties = info.get("properties", {})
        model = str(properties.get(MODEL_PROPERTY, ""))
        made = tuple(v for v in str(properties.get(VECTORS_PROPERTY, "")).split(",") if v)
        return CollectionInfo(dim, model, frozenset(f["name"] for f in info["fields"]), made)

    def ensure_collection(
        self, name: str, dim: int, model: str, vectors: str = "", *, may_mix: bool = False
    ) -> None:
        """Create on first use; refuse vectors of another model or dimension, and of
        another runtime/precision (``vectors``, e.g. "torch/bf16") unless ``may_mix``
        (models.allow_mixed_vectors with the model's recall@10 against fp32 >= 0.99).

        ``vectors`` empty: not known (an import of an old export), not checked.
        """
        if self._verified.get(name) == (dim, model, vectors):
            return  # checked already by this process: no round trip per chunk
        if self.has_collection(name):
            found = self.info(name)
            stored_dim, stored_model = found.dim, found.model
            if stored_dim != dim or (stored_model and stored_model != model):
                raise CollectionMismatchError(
                    f"collection {name!r} holds {stored_dim}-d vectors of model "
                    f"{stored_model!r}; this job makes {dim}-d vectors of {model!r}. "
                    "Index into another collection."
                )
            if vectors and vectors not in found.vectors:
                if found.vectors and not may_mix:
                    made = " and ".join(found.vectors)
                    runtime, _, precision = found.vectors[0].partition("/")
                    raise CollectionMismatchError(
                        f"collection {name!r} holds vectors of {model!r} made by {made}; this "
                        f"job makes them by {vectors} (models.runtime/models.precision). "
                        "Index into another collection, set models.runtime = "
                        f'"{runtime}" and models.precision = "{precision}" to match, or set '
                        "models.allow_mixed_vectors (taken only where the model's recall@10 "
                        "against fp32, in GET /api/v1/models, is at least 0.99)."
                    )
                # A collection made before collections recorded it adopts the first
                # writer's; a mix that is allowed is recorded beside the first.
                made_now = (*found.vectors, vectors)
                self._set_vectors(name, made_now)
                log.info("collection %s: vectors made by %s", name, ", ".join(made_now))
                found = replace(found, vectors=made_now)
            self._verified[name] = (dim, model, vectors)
            self._fields[name] = found.fields
            self._made[name] = found.vectors
            return
        schema = self._client.create_schema(auto_id=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=ID_LEN)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        schema.add_field("path", DataType.VARCHAR, max_length=PATH_LEN)
        schema.add_field("size", DataType.INT64)
        schema.add_field("model", DataType.VARCHAR, max_length=MODEL_LEN)
        schema.add_field("indexed_at", DataType.INT64)
        schema.add_field("width", DataType.INT64)
        schema.add_field("height", DataType.INT64)
        schema.add_field("label", DataType.VARCHAR, max_length=LABEL_LEN)
        schema.add_field("label_score", DataType.FLOAT)
        index = self._client.prepare_index_params()
        index.add_index("vector", index_type="AUTOINDEX", metric_type="COSINE")
        self._client.create_collection(
            name,
            schema=schema,
            index_params=index,
            properties={MODEL_PROPERTY: model, **({VECTORS_PROPERTY: vectors} if vectors else {})},
            # Reads see every acknowledged write (a real server defaults to
            # Bounded: up to 5 s stale); Milvus Lite is always strong.
            consistency_level="Strong",
            timeout=self._timeout,
        )
        self._verified[name] = (dim, model, vectors)
        self._fields[name] = frozenset(f.name for f in schema.fields)
        self._made[name] = (vectors,) if vectors else ()
        log.info("created collection %s (%d-d, %s, %s)", name, dim, model, vectors or "?")

    def made_by(self, name: str) -> tuple[str, ...]:
        """The runtime/precision labels of the collection's vectors (as ``info``, cached)."""
        if name not in self._made:
            self._made[name] = self.info(name).vectors
        return self._made[name]

    def _set_vectors(self, name: str, made: Sequence[str]) -> None:
        self._client.alter_collection_properties(
            name, properties={VECTORS_PROPERTY: ",".join(made)}, timeout=self._timeout
        )

    def drop_collection(self, name: str) -> None:
        if self.has_collection(name):
            self._client.drop_collection(name, timeout=self._timeout)
        if self._clock is not None:
            self._clock.forget(name)
        self._loaded.discard(name)
        self._verified.pop(name, None)
        self._fields.pop(name, None)
        self._made.pop(name, None)

    def fields(self, name: str) -> frozenset[str]:
        """The collection's field names (older collections lack newer metadata fields)."""
        if name not in self._fields:
            self._fields[name] = self.info(name).fields
        return self._fields[name]

    def existing_ids(self, name: str, ids: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        try:
            rows = self._with_loaded(
                name,
                lambda: self._client.query(
                    name,
                    filter=f"id in {json.dumps(list(ids))}",
                    output_fields=["id"],
                    timeout=self._timeout,
                    **self._read_consistency(name),
                ),
            )
        except CollectionNotFoundError:
            return set()  # the first chunk of a new collection
        return {str(r["id"]) for r in rows}

    def upsert(self, name: str, rows: Sequence[Row], *, flush: bool = True) -> None:
        """Upsert in batches, then flush once when ``flush``.

        An acknowledged upsert is logged by the store (a server's message log,
        milvus-lite's write-ahead log), so the writers pass ``flush=False`` and
        seal segments when it pays (``store_writer/flush_due.py``). Batches of
        about a thousand rows insert fastest (larger ones slow down).
        """
        if not rows:
            return
        known = self.fields(name)
        for start in range(0, len(rows), UPSERT_BATCH):
            batch = [
                {k: v for k, v in r.as_dict().items() if k in known}
                for r in rows[start : start + UPSERT_BATCH]
            ]
            self._client.upsert(name, batch, timeout=self._timeout)
        if flush:
            self._client.flush(name, timeout=self._timeout)
        self._wrote(name)

    def flush(self, name: str) -> None:
        """Seal what was written so far into a segment (and build its index): what a
        search scans unindexed, and what a start replays from the log, shrink."""
        self._client.flush(name, timeout=self._timeout)

    def get_vector(self, name: str, vector_id: str) -> list[float] | None:
        rows = self._with_loaded(
            name,
            lambda: self._client.get(
                name,
                ids=[vector_id],
                output_fields=["vector"],
                timeout=self._timeout,
                **self._read_consistency(name),
            ),
        )
        return [float(v) for v in rows[0]["vector"]] if rows else None

    def rewrite_paths(self, name: str, moves: Mapping[str, str], *, flush: bool = True) -> int:
        """Give stored rows (id -> new path) their new path; returns how many were found.

        For files that moved: the row is read whole (vector included) and
        upserted with only its path changed, so nothing is embedded again. Ids
        no longer stored (deleted meanwhile) are left out. A writer's call.
        """
        if not moves:
            return 0
        fields = sorted(self.fields(name))
        found = self._with_loaded(
            name,
            lambda: self._client.get(
                name,
                ids=list(moves),
                output_fields=fields,
                timeout=self._timeout,
                **self._read_consistency(name),
            ),
        )
        rows = []
        for stored in found:
            row = {f: stored[f] for f in fields if f in stored}
            row["vector"] = [float(v) for v in stored["vector"]]
            row["path"] = moves[str(stored["id"])]
            rows.append(row)
        for start in range(0, len(rows), UPSERT_BATCH):
            self._client.upsert(name, rows[start : start + UPSERT_BATCH], timeout=self._timeout)
        if rows:
            if flush:
                self._client.flush(name, timeout=self._timeout)
            self._wrote(name)
        return len(rows)

    def search(self, name: str, vector: Sequence[float], k: int, expr: str = "") -> list[Hit]:
        """Top ``k`` by cosine; ``expr`` a Milvus filter over the metadata fields."""
        return self.search_many(name, [list(vector)], k, expr)[0]

    def search_many(
        self, name: str, vectors: Sequence[Sequence[float]], k: int, expr: str = ""
    ) -> list[list[Hit]]:
        """``search`` for many query vectors in one call: each one's top ``k``, in order."""
        if not vectors:
            return []
        out: list[str] = [f for f in ("path", "width", "height", "label") if f in self.fields(name)]
        return [
            [Hit(id=str(h["id"]), score=float(h["distance"]), **h["entity"]) for h in hits]
            for hits in self._cosine_search(name, vectors, k, expr, out)
        ]

    def neighbours(
        self, name: str, vectors: Sequence[Sequence[float]], k: int, expr: str = ""
    ) -> list[list[tuple[str, float]]]:
        """Top ``k`` (id, cosine) of each of many query vectors, in one search call.

        Ids and scores only: a duplicates job has every row's metadata already.
        A top-k search, not a range search (``radius``): on Milvus Lite the range
        search was three times slower (2,000 queries, batches of 250).
        """
        hits = self._cosine_search(name, vectors, k, expr, [])
        return [[(str(h["id"]), float(h["distance"])) for h in row] for row in hits]

    def _cosine_search(
        self,
        name: str,
        vectors: Sequence[Sequence[float]],
        k: int,
        expr: str,
        output_fields: list[str],
    ) -> Any:
        """One search call for many vectors, at this store's read consistency.

        A filter that matches few rows starves HNSW's candidate list (fewer than
        ``k`` hits come back), so a filtered search looks wider.
        """
        ef = max(self._ef, k, FILTERED_EF if expr else 0)
        consistency = self._read_consistency(name)
        return self._with_loaded(
            name,
            lambda: self._client.search(
                name,
                data=[list(v) for v in vectors],
                limit=k,
                filter=expr,
                output_fields=output_fields,
                search_params={"metric_type": "COSINE", "params": {"ef": ef}},
                timeout=self._timeout,
                **consistency,
            ),
        )

    def matching_ids(self, name: str, expr: str, batch: int = 4096) -> list[str]:
        """Ids of every row matching ``expr``, page by page."""
        return [str(row["id"]) for row in self.iterate(name, expr, ["id"], batch)]

    def iterate(
        self, name: str, expr: str, fields: Sequence[str], batch: int = 1024
    ) -> Iterator[dict[str, Any]]:
        """Every row matching ``expr`` (all: ``""``), ``fields`` only, in pages."""
        self._require(name)
        self._with_loaded(name, lambda: None)
        it = self._client.query_iterator(
            name,
            batch_size=batch,
            filter=expr,
            output_fields=list(fields),
            timeout=self._timeout,
        )
        try:
            while page := it.next():
                yield from page
        finally:
            it.close()

    def delete_ids(self, name: str, ids: Sequence[str], *, flush: bool = True) -> None:
        for start in range(0, len(ids), UPSERT_BATCH):
            batch = list(ids[start : start + UPSERT_BATCH])
            self._client.delete(name, ids=batch, timeout=self._timeout)
        if flush and ids:
            self._client.flush(name, timeout=self._timeout)
        if ids:
            self._wrote(name)

    def last_write_ts(self, name: str) -> int:
        """The Milvus timestamp of this process's newest write to ``name``; 0 if unknown.

        MilvusClient does not return it, but pymilvus keeps it per collection for
        its own "Session" reads; that cache is read here (pymilvus is pinned, and
        ``test_a_read_right_after_a_write_sees_it`` fails if this stops finding it). Milvus
        Lite stamps no writes: 0 there, and its reads need none.
        """
        try:
            handler = self._client._get_connection()
            db = self._client._generate_call_context().get_db_name() or ""
            return int(ts_utils.get_collection_ts(name, handler.server_address, db) or 0)
        except (AttributeError, TypeError, ValueError, MilvusException):
            return 0

    def _wrote(self, name: str) -> None:
        if self._clock is not None:
            self._clock.record(name, self.last_write_ts(name))

    def _read_consistency(self, name: str) -> dict[str, Any]:
        """How a read waits for writes: see ``visionnet.workers.vectorstore.write_clock``."""
        if self._search_consistency != "Session":
            return {"consistency_level": self._search_consistency}
        last = self._clock.last(name) if self._clock is not None else None
        if last is None:  # no write recorded (an older collection, a Redis that lost it)
            return {"consistency_level": "Strong"}
        return {"consistency_level": "Customized", "guarantee_timestamp": last}

    def _require(self, name: str) -> None:
        if not self.has_collection(name):
            raise CollectionNotFoundError(f"collection {name!r} does not exist: index images first")

    def _with_loaded(self, name: str, call: Callable[[], T]) -> T:
        """Run a read, loading the collection first in a new process.

        A collection is not loaded after a server restart: Milvus Lite says
        "released"; a real server says "not loaded" (code 101) and reloads by
        itself, and ``load_collection`` waits for that: load and retry once.
        A missing collection (both stores: code 100) is a CollectionNotFoundError,
        found by the read itself rather than by a round trip before every read.
        """
        try:
            if name not in self._loaded:
                self._client.load_collection(name, timeout=self._timeout)
                self._loaded.add(name)
            try:
                return call()
            except MilvusException as exc:
                text = f"{exc} {getattr(exc, 'message', '')}"
                if "released" not in text and "not loaded" not in text:
                    raise
                log.info("collection %s was released; loading it again", name)
                self._client.load_collection(name, timeout=self._timeout)
                return call()
        except MilvusException as exc:
            if getattr(exc, "code", None) != COLLECTION_NOT_FOUND:
                raise
            self._loaded.discard(name)
            self._fields.pop(name, None)
            raise CollectionNotFoundError(
                f"collection {name!r} does not exist: index images first"
            ) from exc
