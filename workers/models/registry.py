"""Models of one worker process, keyed by (kind, ref), each loaded at most once, on first use.

Loading lazily (not in ``worker_process_init``) keeps big loads clear of
Celery's 4 s process-start limit and lets a model that cannot be loaded fail
the job that needed it instead of the worker. Like immich's model cache, any
model class works here: a new kind of model needs no change to this file.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TypeVar

from visionnet.workers.models.base import ImageModel
from visionnet.workers.models.loading import resolve_device
from visionnet.workers.models.runtime import Runtime

log = logging.getLogger(__name__)
M = TypeVar("M", bound=ImageModel)


class ModelRegistry:
    def __init__(self, device: str, *, offline: bool, runtime: Runtime | None = None) -> None:
        self._device = device
        self._offline = offline
        self._runtime = runtime or Runtime()
        self._lock = threading.Lock()
        self._models: dict[tuple[type[ImageModel], str], ImageModel] = {}

    @property
    def device(self) -> str:
        return resolve_device(self._device)

    def get(self, kind: type[M], ref: str) -> M:
        """The loaded ``kind`` model for ``ref``; loads it on the first call only."""
        with self._lock:
            model = self._models.get((kind, ref))
            if model is None:
                start = time.perf_counter()
                model = kind(ref, self.device, offline=self._offline, runtime=self._runtime)
                self._models[(kind, ref)] = model
                log.info("loaded %s %s in %.2fs", kind.kind, ref, time.perf_counter() - start)
            assert isinstance(model, kind)
            return model
