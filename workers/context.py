"""Per-process resources of a worker, built on first use and then reused.

Celery makes one instance of each task per process; hanging the resources on
the shared base class means every task of a process shares one model
registry, one Redis client and one Milvus client (Celery's DatabaseTask
pattern).
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, ClassVar

from celery import Task

from config.settings import Settings, get_settings
from visionnet.blobs import BlobStore
from visionnet.jobs import JobState, JobStore
from visionnet.redis_conn import connect
from workers.models.registry import ModelRegistry
from workers.store.milvus_store import VectorStore


class WorkerContext:
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
    def models(self) -> ModelRegistry:
        s = self.settings
        return ModelRegistry(
            s.classifier_ref, s.embedder_ref, s.models.device, offline=s.models.offline
        )

    @cached_property
    def store(self) -> VectorStore:
        m = self.settings.milvus
        return VectorStore(self.settings.effective_milvus_uri, m.token, m.timeout_s, m.search_ef)


class VisionTask(Task):  # type: ignore[misc]
    """Base of every VisionNet task: shared context, and a failed task fails its job."""

    _context: ClassVar[WorkerContext | None] = None

    @property
    def ctx(self) -> WorkerContext:
        if VisionTask._context is None:
            VisionTask._context = WorkerContext(get_settings())
        return VisionTask._context

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        job_id = kwargs.get("job_id") if isinstance(kwargs, dict) else None
        if job_id:
            self.ctx.jobs.transition(job_id, JobState.FAILED, error=f"{type(exc).__name__}: {exc}")
