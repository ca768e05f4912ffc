"""Rebuilding the collection registry and the image catalog from the vector store.

Collections indexed before VisionNet kept a registry and a catalog in Redis (or
a Redis that lost its data) are invisible to the web: no entry in the
collection list, 0 images, 404 for their images. Their rows are all in the
store, so both can be rebuilt from it: ``visionnet catalog-rebuild``. Reading
is allowed to any process; the catalog writes are idempotent (the same entry
for the same id), so it can run beside a live stack.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from visionnet.workers.base import WorkerContext
from visionnet.workers.vectorstore.milvus_store import METADATA_FIELDS

log = logging.getLogger(__name__)

PAGE = 4096


def rebuild_catalog(ctx: WorkerContext, names: Iterable[str] | None = None) -> dict[str, int]:
    """Register each collection and put every stored row in the catalog; rows per name."""
    counts: dict[str, int] = {}
    for name in list(names) if names is not None else ctx.store.names():
        info = ctx.store.info(name)
        ctx.collections.created(name, info.model, info.dim, vectors=info.vectors)
        fields = [f for f in METADATA_FIELDS if f in info.fields]
        rows = 0
        page: dict[str, dict[str, object]] = {}
        for row in ctx.store.iterate(name, "", ["id", *fields], batch=PAGE):
            page[str(row["id"])] = row
            if len(page) == PAGE:
                ctx.catalog.put(name, page)
                rows += len(page)
                page = {}
        ctx.catalog.put(name, page)
        counts[name] = rows + len(page)
        log.info("catalog of %s: %d images", name, counts[name])
    return counts
