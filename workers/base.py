"""What every worker role shares: per-process context built on first use, and a task base.

Celery makes one instance of each task per process; each role's task base
hands out one context per process (Celery's DatabaseTask pattern), so every
task of a process shares one Redis client and whatever heavy resources its
role needs (models for the model worker, the vector store for both).
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, ClassVar, TypeVar

from celery import Task

from visionnet.config.settings import Settings, get_settings
from visionnet.core.blobs import BlobStore
from visionnet.core.jobs import JobState, JobStore
from visionnet.core.redis_conn import connect
from visionnet.workers.vectorstore.milvus_store import VectorStore


class WorkerContext:
    """Job records, upload blobs and the vector store client, made when first used."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def _redis(self) -> Any:
        return connect(self.settings.effective_redis_url)

    @cached_property
    def jobs(self) -> JobStore:
        return JobStore(self._redis, self.settings.result_ttl_s, self.settings.jobs.max_errors_kept)

    @cached_property
    def blobs(self) -> BlobStore:
        raw = connect(self.settings.effective_redis_url, decode=False)
        return BlobStore(raw, self.settings.result_ttl_s)

    @cached_property
    def store(self) -> VectorStore:
        m = self.settings.milvus
        return VectorStore(self.settings.effective_milvus_uri, m.token, m.timeout_s, m.search_ef)


C = TypeVar("C", bound=WorkerContext)
_contexts: dict[type[WorkerContext], WorkerContext] = {}


def process_context(kind: type[C]) -> C:
    """The one ``kind`` context of this process."""
    ctx = _contexts.get(kind)
    if ctx is None:
        ctx = _contexts[kind] = kind(get_settings())
    assert isinstance(ctx, kind)
    return ctx


class VisionTask(Task):  # type: ignore[misc]
    """Base of every VisionNet task: a failed task fails its job."""

    context_class: ClassVar[type[WorkerContext]] = WorkerContext

    @property
    def base_ctx(self) -> WorkerContext:
        return process_context(self.context_class)

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        job_id = kwargs.get("job_id") if isinstance(kwargs, dict) else None
        if job_id:
            self.base_ctx.jobs.transition(
                job_id, JobState.FAILED, error=f"{type(exc).__name__}: {exc}"
            )
