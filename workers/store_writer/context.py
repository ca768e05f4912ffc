"""The store writer's task base: the shared context is all it needs (no models)."""

from __future__ import annotations

from visionnet.workers.base import VisionTask, WorkerContext, process_context


class StoreTask(VisionTask):
    """Base of the store writer's tasks (queue ``store``, exactly one consumer)."""

    @property
    def ctx(self) -> WorkerContext:
        return process_context(WorkerContext)
