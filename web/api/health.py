"""Health: Redis answers, and at least one worker consumes each queue."""

from __future__ import annotations

from typing import Any

import redis

from visionnet.core.queues import MODEL_WORKER_QUEUES, STORE_QUEUE
from visionnet.web.api.common import api_blueprint
from visionnet.web.schemas import Health, QueueHealth
from visionnet.web.services import services

bp = api_blueprint("health", "health", "Service health.")


def required_queues(direct_writes: bool) -> tuple[str, ...]:
    """Every queue needs a consumer; the store queue is unused when model workers write."""
    return MODEL_WORKER_QUEUES if direct_writes else (*MODEL_WORKER_QUEUES, STORE_QUEUE)


@bp.get(
    "/health",
    summary="Redis reachable and workers consuming each queue",
    responses={200: Health, 503: Health},
)
def health() -> Any:
    svc = services()
    required = required_queues(svc.settings.milvus.direct_writes)
    consumers: dict[str, list[str]] = {q: [] for q in required}
    try:
        redis_ok = svc.jobs.ping()
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
        redis_ok = False
    if redis_ok:
        for queue, workers in svc.queue_consumers().items():
            consumers.setdefault(queue, []).extend(workers)
    ok = redis_ok and all(consumers[q] for q in required)
    body = Health(
        status="ok" if ok else "degraded",
        redis=redis_ok,
        queues=[QueueHealth(queue=q, workers=sorted(w)) for q, w in sorted(consumers.items())],
    )
    return body.model_dump(), 200 if ok else 503
