"""Queues, task names and routes: the contract between the web and the workers.

The web sends tasks by name and never imports worker code, so neither torch
nor pymilvus is ever loaded in the web process. Root tasks come from the job
type table; the index pipeline adds two internal stages.
"""

from __future__ import annotations

from typing import Any

from visionnet.config.settings import Settings

# Interactive work (classify, embed, search: a few images, a user waiting) and
# bulk work (index planning and chunks) go to separate queues. A model worker
# consumes both, always looking at "models" first (queue_order_strategy
# "priority"), and holds one message at a time (prefetch 1, acks late): a
# search waits for at most the one chunk in progress, never for the backlog.
MODELS_QUEUE = "models"
BULK_QUEUE = "bulk"
STORE_QUEUE = "store"
# What a model worker consumes, in the order it looks at them.
MODEL_WORKER_QUEUES = (MODELS_QUEUE, BULK_QUEUE)

# Internal stages of an index job (the root task, ``visionnet.index``, plans them).
EMBED_CHUNK = "visionnet.index.embed_chunk"
WRITE_CHUNK = "visionnet.index.write_chunk"
# Dropping a collection (a write: where the writes go).
DROP_COLLECTION = "visionnet.collections.drop"
# Flushing a Milvus Lite collection that was left unflushed (a write too).
FLUSH_COLLECTION = "visionnet.store.flush"
# Where the store writer's tasks live; its queue has exactly one consumer.
STORE_TASKS_MODULES = (
    "visionnet.workers.store_writer.write_chunk",
    "visionnet.workers.store_writer.collections",
    "visionnet.workers.store_writer.delete_images",
    "visionnet.workers.store_writer.flush_due",
)


def task_routes(direct_writes: bool = False) -> dict[str, dict[str, str]]:
    from visionnet.core.jobtypes import JOB_TYPES

    routes = {spec.task: {"queue": spec.queue} for spec in JOB_TYPES.values()}
    routes[EMBED_CHUNK] = {"queue": BULK_QUEUE}
    # Every write goes to one queue consumed by exactly one process: Milvus Lite
    # corrupts its log under concurrent writers.
    routes[WRITE_CHUNK] = {"queue": STORE_QUEUE}
    routes[DROP_COLLECTION] = {"queue": STORE_QUEUE}
    routes[FLUSH_COLLECTION] = {"queue": STORE_QUEUE}
    if direct_writes:
        # A real Milvus server takes many writers and there is no store worker:
        # the model workers' bulk queue takes the writes.
        routes = {
            task: {"queue": BULK_QUEUE} if r["queue"] == STORE_QUEUE else r
            for task, r in routes.items()
        }
    return routes


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings shared by the web (as a client) and the workers."""
    url = settings.effective_redis_url
    return {
        "broker_url": url,
        "result_backend": url,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "result_expires": settings.result_ttl_s,
        "task_routes": task_routes(settings.milvus.direct_writes),
        "task_default_queue": MODELS_QUEUE,
        # Long tasks: take one at a time so idle workers can pick up the rest.
        "worker_prefetch_multiplier": 1,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {
            "socket_timeout": 5,
            "socket_connect_timeout": 5,
            "visibility_timeout": settings.jobs.redelivery_timeout_s,
            # Look for messages of vanished workers every 10 s (kombu's default
            # sweep is every 100 s), so they come back soon after the timeout.
            "unacked_restore_interval": min(10, settings.jobs.redelivery_timeout_s),
            "unacked_restore_throttle": 1,
            # Consume queues in the order given (interactive first), not round robin.
            "queue_order_strategy": "priority",
        },
        # A task sent while Redis restarts (a chunk handing on to the writer, a
        # retry) waits for it, about 30 s, instead of failing at once.
        "task_publish_retry_policy": {
            "max_retries": 20,
            "interval_start": 0.2,
            "interval_step": 0.5,
            "interval_max": 2.0,
        },
        # Every task acks late and is idempotent; a task whose pool process is
        # killed goes back to the queue instead of being acked as failed.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # Nothing reads task results (jobs report to their records), and a chain
        # passes embed_chunk's vectors to write_chunk without the backend.
        "task_ignore_result": True,
        # Flower turns workers' task events on when it runs (its enable_events,
        # every 5 s); without it nobody reads them, and each one-image job
        # would pay for a published event per state change.
        "worker_send_task_events": settings.flower.task_events,
        "task_send_sent_event": settings.flower.task_events,
        "timezone": "UTC",
    }
