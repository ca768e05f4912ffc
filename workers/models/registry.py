"""Models of one worker process, each loaded at most once and only when first used.

Loading lazily (not in ``worker_process_init``) keeps big loads clear of
Celery's 4 s process-start limit and lets a model that cannot be loaded fail
the job that needed it instead of the worker.
"""

from __future__ import annotations

import logging
import threading
import time

from workers.models.classifier import Classifier
from workers.models.embedder import Embedder
from workers.models.loading import resolve_device

log = logging.getLogger(__name__)


class ModelRegistry:
    def __init__(
        self, classifier_ref: str, embedder_ref: str, device: str, *, offline: bool
    ) -> None:
        self._classifier_ref = classifier_ref
        self._embedder_ref = embedder_ref
        self._device = device
        self._offline = offline
        self._lock = threading.Lock()
        self._classifier: Classifier | None = None
        self._embedder: Embedder | None = None

    @property
    def device(self) -> str:
        return resolve_device(self._device)

    def classifier(self) -> Classifier:
        with self._lock:
            if self._classifier is None:
                start = time.perf_counter()
                self._classifier = Classifier(
                    self._classifier_ref, self.device, offline=self._offline
                )
                log.info(
                    "loaded classifier %s in %.2fs",
                    self._classifier_ref,
                    time.perf_counter() - start,
                )
            return self._classifier

    def embedder(self) -> Embedder:
        with self._lock:
            if self._embedder is None:
                start = time.perf_counter()
                self._embedder = Embedder(self._embedder_ref, self.device, offline=self._offline)
                log.info(
                    "loaded embedder %s in %.2fs", self._embedder_ref, time.perf_counter() - start
                )
            return self._embedder
