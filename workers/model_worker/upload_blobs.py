"""When a task's upload blobs may go: after its last attempt, never before a retry.

An uploaded query image lives in Redis (``visionnet.core.blobs``) until a task
reads it. A task that deletes it whatever happens leaves nothing for its own
retry, which then fails with "upload expired" although the upload was fine and
only Milvus or Redis was restarting. So the blobs go when the task is done with
them for good: it succeeded, failed with a verdict, or ran out of retries. A
pool process that dies leaves them for the redelivered message; the blob's TTL
(``result_ttl_s``) bounds them in every case.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from celery.exceptions import Retry

from visionnet.core.blobs import BlobStore
from visionnet.workers.base import TRANSIENT_ERRORS, VisionTask

log = logging.getLogger(__name__)


def will_retry(task: VisionTask, exc: BaseException) -> bool:
    """True where Celery will run the task again for ``exc`` (``autoretry_for``)."""
    if isinstance(exc, Retry):
        return True
    retryable: tuple[type[BaseException], ...] = tuple(getattr(task, "autoretry_for", ()))
    if not retryable or not isinstance(exc, retryable):
        return False
    limit: Any = task.max_retries
    return limit is None or (task.request.retries or 0) < limit


@contextmanager
def released_after_last_attempt(
    task: VisionTask,
    blobs: BlobStore,
    keys: Sequence[str],
) -> Iterator[None]:
    """Delete ``keys`` once the body ends for good; keep them when it will be retried."""
    try:
        yield
    except BaseException as exc:
        if not will_retry(task, exc):
            _delete(blobs, keys)
        raise
    _delete(blobs, keys)


def upload_keys(sources: Sequence[Mapping[str, Any]]) -> list[str]:
    """The blob keys of a job's uploaded sources (a source by path has none)."""
    return [str(source["blob"]) for source in sources if "blob" in source]


def _delete(blobs: BlobStore, keys: Sequence[str]) -> None:
    """Early cleanup only: with Redis away the blobs expire on their own."""
    try:
        blobs.delete(*keys)
    except TRANSIENT_ERRORS as exc:
        log.warning("upload blobs %s left to expire: %r", list(keys), exc)
