"""The model worker's per-process context: the model registry on top of the shared parts."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from typing import Any, ClassVar, TypeVar

import numpy as np
from numpy.typing import NDArray
from PIL.Image import Image

from visionnet.config.settings import Settings
from visionnet.core.loaded_models import LoadedModels
from visionnet.workers.base import VisionTask, WorkerContext, process_context
from visionnet.workers.fetch.fetcher import Fetcher
from visionnet.workers.model_worker.batcher import Batcher, DirectRunner, DynamicBatcher
from visionnet.workers.models.base import ImageModel
from visionnet.workers.models.classifier import Classifier, Prediction
from visionnet.workers.models.embedder import Embedder
from visionnet.workers.models.one_pass import gives_embedder_vectors
from visionnet.workers.models.registry import ModelRegistry
from visionnet.workers.models.runtime import Runtime, bulk_passes

M = TypeVar("M", bound=ImageModel)


class ModelContext(WorkerContext):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        # One batcher per model; the interactive worker's task threads race to make it.
        self._batchers: dict[str, Batcher[Any, Any]] = {}
        self._batchers_lock = threading.Lock()
        self._published: set[str] = set()
        self._one_pass: bool | None = None
        self._one_pass_lock = threading.Lock()

    @cached_property
    def reader_pool(self) -> ThreadPoolExecutor:
        """Read, hash and decode beside the model (made in the pool process, after the fork)."""
        return ThreadPoolExecutor(self.settings.models.reader_threads, thread_name_prefix="reader")

    @cached_property
    def fetcher(self) -> Fetcher:
        """Downloads of URL-list chunks: their own thread pool, the SSRF guard, per-host slots."""
        return Fetcher(self.settings.sources)

    @cached_property
    def pass_pool(self) -> ThreadPoolExecutor:
        """Threads that run an index chunk's forward passes, ``passes_at_once`` at a time."""
        return ThreadPoolExecutor(self.passes_at_once, thread_name_prefix="pass")

    @cached_property
    def passes_at_once(self) -> int:
        m = self.settings.models
        return bulk_passes(m.bulk_passes_at_once, self.embedder().device, os.cpu_count())

    @cached_property
    def models(self) -> ModelRegistry:
        m = self.settings.models
        runtime = Runtime(
            backend=m.runtime,
            precision=m.precision,
            channels_last=m.channels_last,
            compile=m.compile,
            flip_invariant=m.flip_invariant,
            onnx_cache=str(self.settings.data_path / "onnx"),
            agreement_cache=str(self.settings.data_path / "agreement"),
        )
        return ModelRegistry(m.device, offline=m.offline, runtime=runtime)

    @cached_property
    def loaded_models(self) -> LoadedModels:
        return LoadedModels(self._redis)

    def classifier(self) -> Classifier:
        return self._publish(self.models.get(Classifier, self.settings.classifier_ref))

    def embedder(self) -> Embedder:
        return self._publish(self.models.get(Embedder, self.settings.embedder_ref))

    def one_pass(self) -> bool:
        """Whether the classifier's pass also gives the embedder's vectors (checked once)."""
        with self._one_pass_lock:
            if self._one_pass is None:
                self._one_pass = gives_embedder_vectors(self.classifier(), self.embedder())
            return self._one_pass

    def _publish(self, model: M) -> M:
        """Tell the web what this process loaded (once per model kind)."""
        if model.kind not in self._published:
            self.loaded_models.publish(model.kind, dict(model.info))
            self._published.add(model.kind)
        return model

    def classify_batcher(self) -> Batcher[tuple[Image, int], list[Prediction]]:
        """Top-k predictions per (image, k), in passes shared by concurrent requests."""
        model = self.classifier()

        def run(items: list[tuple[Image, int]]) -> list[list[Prediction]]:
            rows = model.predict([image for image, _ in items], max(k for _, k in items))
            return [row[:k] for row, (_, k) in zip(rows, items, strict=True)]

        return self._batcher("classify", run)

    def embed_batcher(self) -> Batcher[Image, NDArray[np.float32]]:
        """One vector per image, in passes shared by concurrent requests."""
        model = self.embedder()
        return self._batcher("embed", lambda images: list(model.embed(images)))

    def _batcher(self, name: str, run: Callable[[list[Any]], Sequence[Any]]) -> Batcher[Any, Any]:
        with self._batchers_lock:
            found = self._batchers.get(name)
            if found is None:
                m = self.settings.models
                found = self._batchers[name] = (
                    DynamicBatcher(
                        run,
                        max_batch=m.batch_size,
                        max_wait_s=m.max_batch_wait_ms / 1000,
                        name=name,
                    )
                    if m.dynamic_batching
                    else DirectRunner(run)
                )
            return found


class ModelTask(VisionTask):
    """Base of the model worker's tasks (queue ``models``)."""

    context_class: ClassVar[type[WorkerContext]] = ModelContext

    @property
    def ctx(self) -> ModelContext:
        return process_context(ModelContext)


# Connects the warm-up to worker start (imported here: every model task imports this module).
from visionnet.workers.model_worker import warmup as _warmup  # noqa: E402, F401
