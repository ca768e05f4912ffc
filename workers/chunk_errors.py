"""Which errors end an index job, and how a chunk's error reads in its files' errors.

Shared by both halves of an index chunk (``embed_chunk`` in the model worker,
``write_chunk`` in the store writer) without loading either side's heavy parts.
"""

from __future__ import annotations

from celery.exceptions import SoftTimeLimitExceeded
from pymilvus import MilvusException

from visionnet.workers.models.loading import ModelUnavailableError
from visionnet.workers.vectorstore.milvus_store import CollectionMismatchError

# Errors that are the job's, not one chunk's: every chunk would meet them.
JOB_LEVEL_ERRORS: tuple[type[BaseException], ...] = (CollectionMismatchError, ModelUnavailableError)
MAX_MESSAGE = 500  # characters of an error's message kept per file


def failure_reason(exc: BaseException, time_limit_s: float | None) -> str:
    """The per-file error of a chunk that failed with ``exc``: its type and message."""
    if isinstance(exc, SoftTimeLimitExceeded):
        return f"timed out after {time_limit_s:g} s" if time_limit_s else "timed out"
    # A Milvus error's str() wraps its message in its repr (or is empty: a server down).
    message = (
        str(getattr(exc, "message", "") or exc) if isinstance(exc, MilvusException) else str(exc)
    )
    if len(message) > MAX_MESSAGE:
        message = message[:MAX_MESSAGE] + "..."
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
