"""Duplicates job: groups of near-duplicate images in a collection.

Read-only: every vector of the collection (or of a path prefix) is fetched
once, page by page, then the store's own neighbour search runs for many query
vectors per call (``duplicates.search_batch``): top ``k`` per image, kept when
the cosine reaches the threshold. Union-find joins the pairs into groups
(``dup_groups``), stored sorted in Redis for the web to page
(``visionnet.core.dupgroups``).

On the bulk queue: minutes over a large collection, and it must not hold up
interactive searches (a model worker takes ``models`` first). It never writes
vectors, so it needs no store writer. Resumable: images are processed in id
order and every ``duplicates.checkpoint_every`` images the last id done and
the pairs found so far are checkpointed, so a redelivered task (its worker
killed: the message comes back, acks late) continues from there.
"""

from __future__ import annotations

import bisect
import logging
import time
from typing import Any

import numpy as np
from celery import shared_task

from visionnet.core.dupgroups import DuplicateStore
from visionnet.core.jobs import JobState
from visionnet.core.jobtypes import DuplicatesParams, job_type, retention_by_type
from visionnet.workers.model_worker.context import ModelContext, ModelTask
from visionnet.workers.model_worker.dup_groups import Images, build_groups, normalised, pairs_of
from visionnet.workers.vectorstore.filters import FilterError, expression
from visionnet.workers.vectorstore.milvus_store import CollectionNotFoundError

log = logging.getLogger(__name__)

PAGE = 4096
META = ("path", "size", "width", "height")


@shared_task(name=job_type("duplicates").task, base=ModelTask, bind=True, acks_late=True)
def find_duplicates(self: ModelTask, *, job_id: str, params: dict[str, Any]) -> None:
    ctx = self.ctx
    p = DuplicatesParams.model_validate(params)
    settings = ctx.settings.duplicates
    threshold = p.threshold if p.threshold is not None else settings.threshold
    k = p.k if p.k is not None else settings.neighbours
    # A redelivered task finds its job running: it goes on, keeping started_at.
    queued = ctx.jobs.state(job_id) is JobState.QUEUED
    if not (ctx.jobs.start(job_id) if queued else ctx.jobs.is_active(job_id)):
        return
    store = ctx.duplicates
    start = time.perf_counter()
    try:
        expr = expression(
            {"path_prefix": p.path_prefix} if p.path_prefix else {},
            ctx.store.fields(p.collection),
        )
        images = _fetch(ctx, job_id, p.collection, expr)
    except (CollectionNotFoundError, FilterError) as exc:
        ctx.jobs.transition(job_id, JobState.FAILED, error=str(exc))
        return
    if images is None:
        return  # cancelled while reading
    total = len(images.ids)
    saved = store.load_checkpoint(job_id)
    first = bisect.bisect_right(images.ids, saved.after) if saved.after else 0
    if first:
        log.info("job %s: resuming after %d of %d images", job_id, first, total)
    ctx.jobs.set_fields(job_id, total=total, done=first, resumed_from=first)
    pairs = _search(ctx, store, job_id, p.collection, expr, images, first, k, threshold)
    if pairs is None:
        store.drop_checkpoint(job_id)  # cancelled: nothing will resume it
        return
    groups = build_groups(images, [*saved.pairs, *pairs])
    keep_s = retention_by_type(ctx.settings)["duplicates"]
    store.save_groups(job_id, groups, keep_s)
    seconds = time.perf_counter() - start
    result = {
        "collection": p.collection,
        "path_prefix": p.path_prefix,
        "threshold": threshold,
        "k": k,
        "images": total,
        "groups": len(groups),
        "images_in_groups": sum(g["size"] for g in groups),
        "resumed_from": first,
        "seconds": round(seconds, 3),
    }
    log.info("job %s: %d groups of %d images in %.1f s", job_id, len(groups), total, seconds)
    if ctx.jobs.transition(job_id, JobState.SUCCEEDED, result=result, done=total, failed=0):
        store.drop_checkpoint(job_id)
    else:
        store.delete(job_id)  # cancelled at the last moment


def _fetch(ctx: ModelContext, job_id: str, collection: str, expr: str) -> Images | None:
    """Every matching row's id, metadata and vector (as float32), sorted by id."""
    fields = ctx.store.fields(collection)
    wanted = ["id", *(f for f in META if f in fields), "vector"]
    ids: list[str] = []
    meta: dict[str, list[Any]] = {f: [] for f in META}
    blocks: list[np.ndarray[Any, np.dtype[np.float32]]] = []
    page: list[list[float]] = []
    for row in ctx.store.iterate(collection, expr, wanted, batch=PAGE):
        ids.append(str(row["id"]))
        for f in META:
            meta[f].append(row.get(f, "" if f == "path" else 0))
        page.append(row["vector"])
        if len(page) == PAGE:
            blocks.append(np.asarray(page, dtype=np.float32))
            page = []
            if not ctx.jobs.set_fields(job_id, total=len(ids)) or not ctx.jobs.is_active(job_id):
                return None
    if page:
        blocks.append(np.asarray(page, dtype=np.float32))
    order = sorted(range(len(ids)), key=ids.__getitem__)
    vectors = np.concatenate(blocks) if blocks else np.zeros((0, 1), dtype=np.float32)
    return Images(
        ids=[ids[i] for i in order],
        paths=[str(meta["path"][i]) for i in order],
        sizes=[int(meta["size"][i]) for i in order],
        widths=[int(meta["width"][i]) for i in order],
        heights=[int(meta["height"][i]) for i in order],
        vectors=normalised(vectors[order]),
    )


def _search(
    ctx: ModelContext,
    store: DuplicateStore,
    job_id: str,
    collection: str,
    expr: str,
    images: Images,
    first: int,
    k: int,
    threshold: float,
) -> list[tuple[str, str]] | None:
    """The pairs found from image ``first`` on, checkpointed as it goes; None if cancelled."""
    settings = ctx.settings.duplicates
    known = set(images.ids)
    found: list[tuple[str, str]] = []
    pending: list[tuple[str, str]] = []
    since = 0
    total = len(images.ids)
    for at in range(first, total, settings.search_batch):
        end = min(at + settings.search_batch, total)
        # k + 1: the image itself comes back among its own neighbours.
        hits = ctx.store.neighbours(collection, images.vectors[at:end].tolist(), k + 1, expr)
        batch = pairs_of(images.ids[at:end], hits, threshold, known)
        found.extend(batch)
        pending.extend(batch)
        since += end - at
        if since >= settings.checkpoint_every or end == total:
            store.save_checkpoint(job_id, images.ids[end - 1], pending)
            pending, since = [], 0
            if not ctx.jobs.set_fields(job_id, done=end) or not ctx.jobs.is_active(job_id):
                return None
    return found
