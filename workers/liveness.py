"""A worker reports itself alive: a consumer bootstep that writes its liveness record.

Every ``stack.liveness_interval_s`` the worker's main process writes what it
consumes right now (the task consumer's queues, so a queue it stopped consuming
drops out) to Redis, with a TTL of ``stack.liveness_ttl_s``
(``visionnet.core.liveness``). It runs on the worker's own timer, the one that
sends Celery's event heartbeats, so it beats as long as the consumer's loop
runs, whether or not task events are on, and costs one Redis call per beat.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from typing import Any

import redis
from celery import bootsteps

from visionnet.config.settings import get_settings
from visionnet.core.liveness import WorkerRecord, WorkerRegistry
from visionnet.core.redis_conn import connect

log = logging.getLogger(__name__)


class LivenessBeat(bootsteps.StartStopStep):  # type: ignore[misc]
    """Consumer step: a timer that renews this worker's record; cleared on a clean stop."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, c: Any, **kwargs: Any) -> None:
        super().__init__(c, **kwargs)
        self._tref: Any = None
        self._registry: WorkerRegistry | None = None
        self._failing = False

    def start(self, c: Any) -> None:
        stack = get_settings().stack
        if self._registry is None:  # one client for the worker's life, across reconnects
            self._registry = WorkerRegistry(connect(get_settings().effective_redis_url, 2.0))
        self._beat(c, stack.liveness_ttl_s)  # at once: health sees a new worker right away
        self._tref = c.timer.call_repeatedly(
            stack.liveness_interval_s, self._beat, (c, stack.liveness_ttl_s)
        )

    def stop(self, c: Any) -> None:
        """On a stop (and on a reconnect, which starts the step again): not consuming now."""
        if self._tref is not None:
            c.timer.cancel(self._tref)
            self._tref = None
        if self._registry is not None:
            with contextlib.suppress(redis.exceptions.RedisError):  # it expires with its TTL
                self._registry.forget(c.hostname)

    def _beat(self, c: Any, ttl_s: float) -> None:
        consumer = c.task_consumer
        queues = sorted(q.name for q in consumer.queues) if consumer is not None else []
        record = WorkerRecord(
            name=c.hostname,
            host=socket.gethostname(),
            pid=os.getpid(),
            queues=queues,
            time=time.time(),
            ttl_s=ttl_s,
        )
        assert self._registry is not None
        try:
            self._registry.beat(record)
        except redis.exceptions.RedisError as exc:
            # Redis away: the broker connection fails too and Celery reconnects;
            # say so once, not every beat.
            if not self._failing:
                log.warning("liveness record not written: %s", exc)
            self._failing = True
        else:
            self._failing = False
