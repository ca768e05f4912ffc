"""Celery entry point of the workers: ``celery -A visionnet.workers.celery_app worker``.

The task modules come from the job type table (one handler module per type)
plus the store writer's; they import torch, transformers and pymilvus lazily,
so a prefork parent stays light.
"""

from __future__ import annotations

from celery import Celery

from visionnet.config.settings import get_settings
from visionnet.core.jobtypes import JOB_TYPES
from visionnet.core.queues import STORE_TASKS_MODULES, celery_config

app = Celery(
    "visionnet",
    include=list(
        dict.fromkeys(
            [spec.handler_module for spec in JOB_TYPES.values()] + list(STORE_TASKS_MODULES)
        )
    ),
)
app.conf.update(celery_config(get_settings()))
