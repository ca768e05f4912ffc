"""What request handlers use: settings, job records, upload blobs, a Celery client.

Built once per app. The Celery app here only sends tasks by name; it knows no
task code, so nothing heavy is ever imported into the web process.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import redis
from celery import Celery
from flask import current_app
from kombu.exceptions import OperationalError

from visionnet.config.settings import Settings
from visionnet.core.blobs import BlobStore
from visionnet.core.catalog import Catalog
from visionnet.core.collections import CollectionRegistry
from visionnet.core.dupgroups import DuplicateStore
from visionnet.core.jobs import JobState, JobStore
from visionnet.core.jobtypes import retention_by_type
from visionnet.core.liveness import WorkerRegistry
from visionnet.core.loaded_models import LoadedModels
from visionnet.core.queues import celery_config
from visionnet.core.redis_conn import connect

EXTENSION_KEY = "visionnet"
log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    jobs: JobStore
    blobs: BlobStore
    collections: CollectionRegistry
    catalog: Catalog
    models: LoadedModels
    celery: Celery
    workers: WorkerRegistry  # the workers' own liveness records: health never asks them
    duplicates: DuplicateStore  # duplicates jobs' groups, paged by the web

    @classmethod
    def build(cls, settings: Settings) -> Services:
        celery = Celery("visionnet-web", set_as_current=False)
        celery.conf.update(celery_config(settings))
        # Publishing fails fast in a request: the caller gets a 503, not a hang.
        celery.conf.broker_transport_options = {
            "socket_timeout": 3,
            "socket_connect_timeout": 3,
            "max_retries": 1,
            "visibility_timeout": settings.jobs.redelivery_timeout_s,
        }
        celery.conf.task_publish_retry_policy = {"max_retries": 1, "interval_start": 0.2}
        url = settings.effective_redis_url
        text = connect(url, 3.0)  # one client for the collection registry and the catalog
        return cls(
            settings=settings,
            jobs=JobStore(
                connect(url, 3.0),
                settings.result_ttl_s,
                settings.jobs.max_errors_kept,
                retention_by_type(settings),
            ),
            blobs=BlobStore(connect(url, 3.0, decode=False), settings.result_ttl_s),
            collections=CollectionRegistry(text),
            catalog=Catalog(text),
            models=LoadedModels(text),
            celery=celery,
            workers=WorkerRegistry(text),
            duplicates=DuplicateStore(text, settings.result_ttl_s),
        )

    def send(self, task: str, job_id: str, **kwargs: Any) -> None:
        """Enqueue a job's root task under the job's id, so a cancel can revoke it.

        ``ignore_result``: the job reports to its record. ``send_task`` would
        otherwise ask for a Celery result whatever ``task_ignore_result`` says
        (the message's flag wins over the task's): the web subscribing to its
        channel and the worker storing it for ``result_ttl_s``, per job.
        """
        try:
            self.celery.send_task(
                task, kwargs={"job_id": job_id, **kwargs}, task_id=job_id, ignore_result=True
            )
        except OperationalError as exc:
            self._not_sent(job_id, kwargs, exc)
            raise  # the client gets its 503

    def _not_sent(self, job_id: str, kwargs: dict[str, Any], exc: OperationalError) -> None:
        """A record whose task never left: failed with the reason, not ``queued`` until its TTL.

        The record is made before the publish so that a worker never takes a
        message without one. A publish that raised may still have been delivered;
        its worker then finds the record final and does nothing. Redis away for
        the record too: it stays, and expires with ``result_ttl_s``.
        """
        try:
            self.jobs.transition(
                job_id, JobState.FAILED, error=f"could not be queued (broker unavailable): {exc}"
            )
            self.blobs.delete(*upload_blobs(kwargs))
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            log.warning("job %s was not queued and its record could not be failed", job_id)


def upload_blobs(kwargs: dict[str, Any]) -> list[str]:
    """The upload blob keys a root task's arguments name (images and query uploads)."""
    sources = list(kwargs.get("sources") or [])
    query = kwargs.get("query")
    if isinstance(query, dict) and isinstance(query.get("source"), dict):
        sources.append(query["source"])
    if isinstance(query, dict) and isinstance(query.get("sources"), list):
        sources.extend(query["sources"])  # a search's several query images
    return [s["blob"] for s in sources if isinstance(s, dict) and "blob" in s]


def services() -> Services:
    svc: Services = current_app.extensions[EXTENSION_KEY]
    return svc
