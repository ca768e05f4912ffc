"""The store writer's task base: the shared context, and the writer lock's fence."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from celery.exceptions import Reject

from visionnet.core.redis_conn import connect
from visionnet.workers.base import VisionTask, WorkerContext, process_context
from visionnet.workers.store_writer.fence import Fence


class StoreTask(VisionTask):
    """Base of the store writer's tasks (queue ``store``, exactly one consumer).

    Each task runs only while this writer holds the store writer lock
    (``fence.py``); a message that came while it did not goes back to the queue.
    """

    @property
    def ctx(self) -> WorkerContext:
        return process_context(WorkerContext)

    @cached_property
    def fence(self) -> Fence | None:
        return Fence.from_environment(connect(self.ctx.settings.effective_redis_url))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        fence = self.fence
        if fence is not None and self.request.id and not self.request.called_directly:
            # Before the delivery count: a message handed back for want of the
            # lock has not been run, and must not count towards its give-up.
            wait_s = self.ctx.settings.jobs.redelivery_timeout_s / 2
            if not fence.wait_until_held(wait_s):
                raise Reject("the store writer does not hold its lock", requeue=True)
        return super().__call__(*args, **kwargs)
