"""The model worker's per-process context: the model registry on top of the shared parts."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from typing import ClassVar

from visionnet.workers.base import VisionTask, WorkerContext, process_context
from visionnet.workers.models.classifier import Classifier
from visionnet.workers.models.embedder import Embedder
from visionnet.workers.models.registry import ModelRegistry


class ModelContext(WorkerContext):
    @cached_property
    def reader_pool(self) -> ThreadPoolExecutor:
        """Read, hash and decode beside the model (made in the pool process, after the fork)."""
        return ThreadPoolExecutor(self.settings.models.reader_threads, thread_name_prefix="reader")

    @cached_property
    def models(self) -> ModelRegistry:
        return ModelRegistry(self.settings.models.device, offline=self.settings.models.offline)

    def classifier(self) -> Classifier:
        return self.models.get(Classifier, self.settings.classifier_ref)

    def embedder(self) -> Embedder:
        return self.models.get(Embedder, self.settings.embedder_ref)


class ModelTask(VisionTask):
    """Base of the model worker's tasks (queue ``models``)."""

    context_class: ClassVar[type[WorkerContext]] = ModelContext

    @property
    def ctx(self) -> ModelContext:
        return process_context(ModelContext)
