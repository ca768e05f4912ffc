"""A search job of many query images: uploads, paths or every image under a folder.

"Which of these new photos are already in the library?" Each query gets its own
top-k, cut-off and self-exclusion, as one search would. The queries go through the
model a batch at a time (the embedder's shared passes) and to the store as one
search call per batch. Each batch's entries are appended to the job's result list
as soon as they are found, so a caller pages through them while the job runs
(``GET /api/v1/jobs/<id>/results?after=N``): a folder of ten thousand queries
shows its first answers after one batch, and the record stays small. A redelivered
task goes on after the last batch stored: the list is the progress.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from visionnet.core.jobs import JobState
from visionnet.core.jobtypes import SearchParams
from visionnet.core.pathtext import to_os, to_text
from visionnet.workers.model_worker.context import ModelTask
from visionnet.workers.model_worker.reader import FileError, RawFile, decode
from visionnet.workers.model_worker.sources import Source, fetch
from visionnet.workers.model_worker.walk import WalkNotes, iter_images
from visionnet.workers.models.info import RANDOM_WEIGHTS_NOTICE
from visionnet.workers.models.loading import ModelUnavailableError
from visionnet.workers.vectorstore.filters import FilterError, expression
from visionnet.workers.vectorstore.milvus_store import CollectionNotFoundError, Hit


def kept_hits(hits: list[Hit], self_id: str | None, p: SearchParams, k: int) -> list[Hit]:
    """The hits a caller sees: the query itself left out if asked, none below min_score."""
    kept = [h for h in hits if not (p.exclude_self and self_id is not None and h.id == self_id)]
    if p.min_score is not None:
        kept = [h for h in kept if h.score >= p.min_score]
    return kept[:k]


def upload_keys_of(query: dict[str, Any]) -> list[str]:
    """The upload blobs of a search's query, one or many."""
    sources: list[Source] = list(query.get("sources") or [])
    if isinstance(query.get("source"), dict):
        sources.append(query["source"])
    return [s["blob"] for s in sources if "blob" in s]


def _walk(task: ModelTask, root: str, limit: int) -> list[Source] | str:
    """The folder's images in the index walk's order, or why they cannot be searched."""
    notes = WalkNotes()
    settings = task.ctx.settings
    found = iter_images(Path(to_os(root)), settings.jobs.extensions, limit=limit + 1, notes=notes)
    sources: list[Source] = [{"path": to_text(path)} for path in found]
    if str(Path(to_os(root))) in notes.unreadable:
        return f"{notes.unreadable[str(Path(to_os(root)))]} ({root})"
    if len(sources) > limit:
        return (
            f"the folder {root} holds more than {limit} images: search a smaller folder "
            "(jobs.max_search_queries)"
        )
    if not sources:
        return f"the folder {root} holds no images"
    return sources


def run_many(task: ModelTask, job_id: str, query: dict[str, Any], p: SearchParams, k: int) -> None:
    ctx = task.ctx
    collection = p.collection
    if "root" in query:
        walked = _walk(task, query["root"], ctx.settings.jobs.max_search_queries)
        if isinstance(walked, str):
            ctx.jobs.transition(job_id, JobState.FAILED, error=walked)
            return
        sources = walked
    else:
        sources = query["sources"]
    if not ctx.jobs.start(job_id, total=len(sources)):
        return
    try:
        embedder = ctx.embedder()
        expr = expression(p.filters(), ctx.store.fields(collection))
    except (CollectionNotFoundError, ModelUnavailableError, FilterError) as exc:
        ctx.jobs.transition(job_id, JobState.FAILED, error=str(exc))
        return
    # A redelivered task goes on after the batches it stored already.
    done = ctx.jobs.results_count(job_id)
    failed = sum("error" in e for e in ctx.jobs.results(job_id, 0, done)) if done else 0
    wanted = k + 1 if p.exclude_self else k  # room for the query itself among the hits
    batch_size = ctx.settings.models.batch_size
    query_s = search_s = 0.0
    for start in range(done, len(sources), batch_size):
        if start > done and not ctx.jobs.is_active(job_id):
            return  # cancelled: what was found so far stays readable
        began = time.perf_counter()
        entries: list[dict[str, Any]] = []
        images, slots, ids = [], [], []
        for source in sources[start : start + batch_size]:
            raw = fetch(source, ctx)
            image = raw if isinstance(raw, FileError) else decode(raw, embedder.input_size)
            name = source.get("path") or source.get("name", "upload")
            if isinstance(image, FileError):
                entries.append({"name": name, "error": image.error})
                failed += 1
                continue
            assert isinstance(raw, RawFile)
            slots.append(len(entries))
            ids.append(raw.content_id)
            entries.append({"name": name, "id": raw.content_id})
            images.append(image)
        if images:
            rows = ctx.embed_batcher().submit(images).rows
            query_s += time.perf_counter() - began
            began = time.perf_counter()
            found = ctx.store.search_many(
                collection, [list(map(float, r)) for r in rows], wanted, expr
            )
            search_s += time.perf_counter() - began
            for slot, self_id, hits in zip(slots, ids, found, strict=True):
                entries[slot]["hits"] = [h.__dict__ for h in kept_hits(hits, self_id, p, k)]
        stored = ctx.jobs.append_results(job_id, entries)
        if stored < len(sources):
            ctx.jobs.set_progress(job_id, stored, failed)
    info = embedder.info
    result: dict[str, Any] = {
        "collection": collection,
        "filters": p.filters(),
        "k": k,
        "min_score": p.min_score,
        "exclude_self": p.exclude_self,
        "queries": len(sources),
        "failed": failed,
        # One entry per query, in order: {name, id, hits} or {name, error}.
        "results_url": f"/api/v1/jobs/{job_id}/results",
        "stage_seconds": {"query": round(query_s, 4), "search": round(search_s, 4)},
        "model": info,
    }
    if info["random_weights"]:
        result["notice"] = RANDOM_WEIGHTS_NOTICE
    ctx.jobs.transition(job_id, JobState.SUCCEEDED, result=result, done=len(sources), failed=failed)
