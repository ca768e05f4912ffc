"""Search task: embed the query (or fetch a stored vector), then k nearest by cosine.

Many query images in one job go to ``search_many``; each answers like one search.
"""

from __future__ import annotations

import time
from typing import Any

from celery import shared_task

from visionnet.core.jobs import JobState
from visionnet.core.jobtypes import SearchParams, job_type
from visionnet.workers.model_worker.context import ModelTask
from visionnet.workers.model_worker.reader import FileError, RawFile, decode
from visionnet.workers.model_worker.search_many import kept_hits, run_many, upload_keys_of
from visionnet.workers.model_worker.sources import Source, fetch
from visionnet.workers.model_worker.upload_blobs import released_after_last_attempt
from visionnet.workers.models.embedder import TextSearchUnavailableError
from visionnet.workers.models.info import RANDOM_WEIGHTS_NOTICE
from visionnet.workers.models.loading import ModelUnavailableError
from visionnet.workers.vectorstore.filters import FilterError, expression
from visionnet.workers.vectorstore.milvus_store import CollectionNotFoundError


class QueryError(ValueError):
    """The query cannot be answered; the job fails with this message."""


def _query_vector(
    task: ModelTask, query: dict[str, Any], collection: str
) -> tuple[list[float], str | None]:
    """The query's vector and its content id (None for a text)."""
    ctx = task.ctx
    if "image_id" in query:
        vector = ctx.store.get_vector(collection, query["image_id"])
        if vector is None:
            raise QueryError(f"image_id {query['image_id']!r} is not in collection {collection!r}")
        return vector, query["image_id"]
    if "text" in query:
        (row,) = ctx.embedder().embed_text([query["text"]])
        return [float(v) for v in row], None
    source: Source = query["source"]
    raw = fetch(source, ctx)
    embedder = ctx.embedder()
    image = raw if isinstance(raw, FileError) else decode(raw, embedder.input_size)
    if isinstance(image, FileError):
        raise QueryError(f"query image {image.name!r}: {image.error}")
    assert isinstance(raw, RawFile)
    (row,) = ctx.embed_batcher().submit([image]).rows
    return [float(v) for v in row], raw.content_id


@shared_task(name=job_type("search").task, base=ModelTask, bind=True, acks_late=True)
def search(self: ModelTask, *, job_id: str, query: dict[str, Any], params: dict[str, Any]) -> None:
    ctx = self.ctx
    p = SearchParams.model_validate(params)
    collection, k = p.collection, p.k or ctx.settings.jobs.default_top_k
    # Uploaded query images stay until the last attempt: a retry reads them again.
    with released_after_last_attempt(self, ctx.blobs, upload_keys_of(query)):
        if "sources" in query or "root" in query:
            run_many(self, job_id, query, p, k)  # many query images, each its own hits
        else:
            _run_search(self, job_id, query, p, collection, k)


def _run_search(
    task: ModelTask, job_id: str, query: dict[str, Any], p: SearchParams, collection: str, k: int
) -> None:
    ctx = task.ctx
    # One record write to start and one to finish: a search's whole budget is
    # a few milliseconds (issue "Throughput", P5).
    if not ctx.jobs.start(job_id, total=1):
        return
    try:
        start = time.perf_counter()
        vector, self_id = _query_vector(task, query, collection)
        query_s = time.perf_counter() - start
        expr = expression(p.filters(), ctx.store.fields(collection))
        # One more when the query itself may come back, so k others remain.
        wanted = k + 1 if p.exclude_self and self_id else k
        hits = kept_hits(ctx.store.search(collection, vector, wanted, expr), self_id, p, k)
        search_s = time.perf_counter() - start - query_s
    except (
        QueryError,
        CollectionNotFoundError,
        ModelUnavailableError,
        FilterError,
        TextSearchUnavailableError,
    ) as exc:
        ctx.jobs.transition(job_id, JobState.FAILED, error=str(exc), done=1, failed=1)
        return
    result: dict[str, Any] = {
        "collection": collection,
        "filters": p.filters(),
        "min_score": p.min_score,
        "exclude_self": p.exclude_self,
        "hits": [h.__dict__ for h in hits],
        # Where the time went: the query vector (embedding an upload, or a stored
        # vector fetched by id) and the vector search itself.
        "stage_seconds": {"query": round(query_s, 4), "search": round(search_s, 4)},
    }
    if "text" in query:
        result["query_text"] = query["text"]
    if "image_id" not in query:
        info = ctx.embedder().info
        result["model"] = info
        if info["random_weights"]:
            result["notice"] = RANDOM_WEIGHTS_NOTICE
    ctx.jobs.transition(job_id, JobState.SUCCEEDED, result=result, done=1, failed=0)
