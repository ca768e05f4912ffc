"""Celery entry point of the workers: ``celery -A workers.celery_app worker``.

Only this module's ``include`` list imports the task modules, and those import
torch, transformers and pymilvus lazily, so a prefork parent stays light.
"""

from __future__ import annotations

from celery import Celery

from config.settings import get_settings
from visionnet.queues import celery_config

app = Celery(
    "visionnet",
    include=["workers.tasks.classify", "workers.tasks.index", "workers.tasks.search"],
)
app.conf.update(celery_config(get_settings()))
