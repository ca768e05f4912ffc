"""What every worker role shares: per-process context built on first use, and a task base.

Celery makes one instance of each task per process; each role's task base
hands out one context per process (Celery's DatabaseTask pattern), so every
task of a process shares one Redis client and whatever heavy resources its
role needs (models for the model worker, the vector store for both).
"""

from __future__ import annotations

import logging
import threading
from functools import cached_property
from typing import Any, ClassVar, TypeVar

import redis
from celery import Task
from pymilvus import MilvusException
from pymilvus.exceptions import (
    DataNotMatchException,
    DataTypeNotMatchException,
    FieldTypeException,
    ParamError,
    PrimaryKeyException,
)

from visionnet.config.settings import Settings, get_settings
from visionnet.core.blobs import BlobStore
from visionnet.core.catalog import Catalog
from visionnet.core.collections import CollectionRegistry
from visionnet.core.dupgroups import DuplicateStore
from visionnet.core.jobs import JobState, JobStore
from visionnet.core.jobtypes import retention_by_type
from visionnet.core.redis_conn import connect
from visionnet.workers.vectorstore.milvus_store import VectorStore
from visionnet.workers.vectorstore.staging import StagingArea
from visionnet.workers.vectorstore.write_clock import WriteClock


class WorkerContext:
    """Job records, uploads, staged chunks and the vector store client, made when first used."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def _redis(self) -> Any:
        return connect(self.settings.effective_redis_url)

    @cached_property
    def jobs(self) -> JobStore:
        s = self.settings
        return JobStore(self._redis, s.result_ttl_s, s.jobs.max_errors_kept, retention_by_type(s))

    @cached_property
    def blobs(self) -> BlobStore:
        raw = connect(self.settings.effective_redis_url, decode=False)
        return BlobStore(raw, self.settings.result_ttl_s)

    @cached_property
    def collections(self) -> CollectionRegistry:
        return CollectionRegistry(self._redis)

    @cached_property
    def catalog(self) -> Catalog:
        return Catalog(self._redis)

    @cached_property
    def duplicates(self) -> DuplicateStore:
        return DuplicateStore(self._redis, self.settings.result_ttl_s)

    @cached_property
    def staging(self) -> StagingArea:
        raw = connect(self.settings.effective_redis_url, decode=False)
        return StagingArea(raw, self.settings.result_ttl_s)

    @cached_property
    def store(self) -> VectorStore:
        m = self.settings.milvus
        return VectorStore(
            self.settings.effective_milvus_uri,
            m.token,
            m.timeout_s,
            m.search_ef,
            m.search_consistency,
            WriteClock(self._redis),
        )


log = logging.getLogger(__name__)

# Errors of a dependency that is restarting (Redis, Milvus): the task is retried
# with backoff instead of failing its job.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    MilvusException,
)

# Milvus errors about the data itself (a value too long for its field, of the
# wrong type): no retry changes them, so they fail the task at once.
PERMANENT_MILVUS_ERRORS: tuple[type[BaseException], ...] = (
    ParamError,
    DataNotMatchException,
    DataTypeNotMatchException,
    FieldTypeException,
    PrimaryKeyException,
)


def is_transient(exc: BaseException) -> bool:
    """An outage a retry can outlast (not an error about the data)."""
    return isinstance(exc, TRANSIENT_ERRORS) and not isinstance(exc, PERMANENT_MILVUS_ERRORS)


C = TypeVar("C", bound=WorkerContext)
_contexts: dict[type[WorkerContext], WorkerContext] = {}
_contexts_lock = threading.Lock()


def process_context(kind: type[C]) -> C:
    """The one ``kind`` context of this process (task threads and the warm-up share it)."""
    with _contexts_lock:
        ctx = _contexts.get(kind)
        if ctx is None:
            ctx = _contexts[kind] = kind(get_settings())
    assert isinstance(ctx, kind)
    return ctx


class VisionTask(Task):  # type: ignore[misc]
    """Base of every VisionNet task.

    - Redis or Milvus restarting: retried with backoff (``TRANSIENT_ERRORS``).
    - Any other error, or retries exhausted: the task's job fails with the reason
      (``settle_failure``; an index chunk's task fails only the chunk's files).
    - The task's process died while running it (SIGKILL, OOM, a segfault in a
      decoder): Celery hands the message back (``task_reject_on_worker_lost``).
      Each start is counted in Redis; past ``jobs.max_deliveries`` the task is
      given up (``give_up``) instead of run, so a poison input cannot kill
      workers forever.
    """

    context_class: ClassVar[type[WorkerContext]] = WorkerContext
    autoretry_for = TRANSIENT_ERRORS
    dont_autoretry_for = PERMANENT_MILVUS_ERRORS
    retry_backoff = 2
    retry_backoff_max = 30
    max_retries = 8

    @property
    def base_ctx(self) -> WorkerContext:
        return process_context(self.context_class)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        request = self.request
        if request.id and not request.called_directly:
            ctx = self.base_ctx
            try:
                starts = ctx.jobs.count_delivery(request.id, request.retries or 0)
            except TRANSIENT_ERRORS:
                starts = 1  # Redis is away: the body's own calls retry
            request.starts = starts  # a task may act more carefully on a redelivery
            if starts > ctx.settings.jobs.max_deliveries:
                reason = (
                    f"a worker process died each of the {starts - 1} times it ran this "
                    f"{self.name.rsplit('.', 1)[-1]} task; given up (an input that crashes "
                    "the model or decoder?)"
                )
                log.error("task %s %s: %s", self.name, request.id, reason)
                return self.give_up(reason, args, kwargs)
        return super().__call__(*args, **kwargs)

    def give_up(self, reason: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """What a task that keeps killing its process does instead: fail its job."""
        job_id = kwargs.get("job_id")
        if job_id:
            self.base_ctx.jobs.transition(job_id, JobState.FAILED, error=reason)
        return None

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        job_id = kwargs.get("job_id") if isinstance(kwargs, dict) else None
        if not job_id:
            return
        if is_transient(exc) and (self.request.retries or 0) < self.max_retries:
            # The retry could not even be sent (Redis down): the unacknowledged
            # message comes back after jobs.redelivery_timeout_s; no verdict yet.
            log.warning("task %s of job %s: %r; left for redelivery", task_id, job_id, exc)
            return
        try:
            self.settle_failure(exc, kwargs)
        except TRANSIENT_ERRORS:
            log.exception("could not record the failure of job %s", job_id)

    def settle_failure(self, exc: BaseException, kwargs: dict[str, Any]) -> None:
        """What an error no retry can change does: fail the task's job with the reason.

        The index chunk tasks fail only their own files instead
        (``visionnet.workers.model_worker.chunk_failure``).
        """
        self.base_ctx.jobs.transition(
            kwargs["job_id"], JobState.FAILED, error=f"{type(exc).__name__}: {exc}"
        )
