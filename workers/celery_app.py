"""Celery entry point of the workers: ``celery -A visionnet.workers.celery_app worker``.

The task modules come from the job type table (one handler module per type)
plus the store writer's; they import torch, transformers and pymilvus lazily,
so a prefork parent stays light.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from visionnet.config.settings import Settings, get_settings
from visionnet.core.jobtypes import JOB_TYPES
from visionnet.core.queues import EMBED_CHUNK, STORE_TASKS_MODULES, celery_config
from visionnet.workers.liveness import LivenessBeat


def chunk_time_limits(settings: Settings) -> dict[str, dict[str, Any]]:
    """Celery's time limits on an index chunk (``jobs.chunk_time_limit_s``).

    The soft limit raises ``SoftTimeLimitExceeded`` in the task (the model
    worker runs a prefork pool: signals reach the pool process's main thread,
    which waits on its reader and pass threads), and the chunk's files fail with
    "timed out after N s". A task that does not stop within 60 s more is killed.
    """
    limit = settings.jobs.chunk_time_limit_s
    return {EMBED_CHUNK: {"soft_time_limit": limit, "time_limit": limit + 60}}


app = Celery(
    "visionnet",
    include=list(
        dict.fromkeys(
            [spec.handler_module for spec in JOB_TYPES.values()] + list(STORE_TASKS_MODULES)
        )
    ),
)
app.conf.update(celery_config(get_settings()))
# Each worker writes its own liveness record; health reads it, never broadcasting.
app.steps["consumer"].add(LivenessBeat)
app.conf.task_annotations = chunk_time_limits(get_settings())
