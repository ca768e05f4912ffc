"""Health: Redis answers, and at least one live worker consumes each queue.

Liveness comes from the records the workers write themselves every few
seconds (``visionnet.core.liveness``): one Redis call per probe, and no
broadcast to the workers, whose answers a request would have to wait for.
"""

from __future__ import annotations

import time
from typing import Any

import redis

from visionnet.core.liveness import WorkerRecord, consumers
from visionnet.core.queues import MODEL_WORKER_QUEUES, STORE_QUEUE
from visionnet.web.api.common import api_blueprint
from visionnet.web.schemas import Health, QueueHealth, WorkerHealth
from visionnet.web.services import services

bp = api_blueprint("health", "health", "Service health.")


def required_queues(direct_writes: bool) -> tuple[str, ...]:
    """Every queue needs a consumer; the store queue is unused when model workers write."""
    return MODEL_WORKER_QUEUES if direct_writes else (*MODEL_WORKER_QUEUES, STORE_QUEUE)


@bp.get(
    "/health",
    summary="Redis reachable and a live worker consuming each queue",
    responses={200: Health, 503: Health},
)
def health() -> Any:
    svc = services()
    required = required_queues(svc.settings.milvus.direct_writes)
    workers: list[WorkerRecord] = []
    try:
        workers = svc.workers.alive()  # answers only if Redis does: that is the Redis check
        redis_ok = True
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
        redis_ok = False
    by_queue: dict[str, list[str]] = {q: [] for q in required}
    for queue, names in consumers(workers).items():
        by_queue.setdefault(queue, []).extend(names)
    ok = redis_ok and all(by_queue[q] for q in required)
    now = time.time()
    body = Health(
        status="ok" if ok else "degraded",
        redis=redis_ok,
        queues=[QueueHealth(queue=q, workers=sorted(w)) for q, w in sorted(by_queue.items())],
        workers=[
            WorkerHealth(
                name=w.name,
                host=w.host,
                pid=w.pid,
                queues=w.queues,
                seen_s_ago=round(max(0.0, now - w.time), 3),
            )
            for w in workers
        ],
    )
    return body.model_dump(), 200 if ok else 503
