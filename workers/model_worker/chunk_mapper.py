"""An index chunk's mapper: the forward passes, ``lanes`` at a time, rows kept in order.

Labels and vectors come from one pass where the classifier's head reads the
embedder's vector (``one_pass``, checked once per process); else the embedder's
pass and, when asked, the classifier's on the same decoded pictures, or labels from
words scored on the embedder's vectors (no second pass).
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL.Image import Image

# One batch's pass: vectors, (label, score) per picture, embed and classify seconds.
Passed = tuple[Any, list[tuple[str, float]], float, float]


@dataclass
class Mapped:
    """The chunk's rows so far, in the order their batches were submitted."""

    vectors: list[Any] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    label_scores: list[float] = field(default_factory=list)
    embed_s: float = 0.0
    classify_s: float = 0.0

    def matrix(self) -> NDArray[np.float32]:
        if not self.vectors:
            return np.zeros((0, 0), dtype=np.float32)
        return np.concatenate(self.vectors)


class ChunkMapper:
    """Runs batches through the model in ``pool``, at most ``lanes`` at once."""

    def __init__(
        self,
        embedder: Any,
        classifier: Any | None,
        one_pass: bool,
        pool: Executor,
        lanes: int,
        labeller: Any | None = None,
    ) -> None:
        self.embedder = embedder
        self.classifier = classifier
        # Labels from words (text_labels.WordLabeller): scored on the embedder's vectors.
        self.labeller = labeller
        self.one_pass = one_pass and classifier is not None
        self.pool = pool
        self.lanes = lanes
        self.out = Mapped()
        self._in_flight: deque[Future[Passed]] = deque()

    @property
    def runner(self) -> Any:
        """The model whose preprocessing the reader runs ahead of the pass."""
        return self.classifier if self.one_pass else self.embedder

    @property
    def classifies_apart(self) -> bool:
        """A second pass for the labels (its seconds are reported as "classify")."""
        return self.classifier is not None and not self.one_pass

    def submit(self, prepared: Any, images: list[Image]) -> None:
        """Queue one batch's pass; waits for the oldest when every lane is busy."""
        if len(self._in_flight) == self.lanes:
            self._collect(self._in_flight.popleft())  # in order: rows stay beside their ids
        self._in_flight.append(self.pool.submit(self.forward, prepared, images))

    def finish(self) -> Mapped:
        while self._in_flight:
            self._collect(self._in_flight.popleft())
        return self.out

    def forward(self, prepared: Any, images: list[Image]) -> Passed:
        """One batch's vectors (and labels), in a pass thread."""
        start = time.perf_counter()
        if self.one_pass:
            assert self.classifier is not None
            rows, features = self.classifier.predict_with_features(prepared, top_k=1)
            best = [(row[0].label, round(row[0].score, 6)) for row in rows]
            return features, best, time.perf_counter() - start, 0.0
        features = self.embedder.embed(prepared)
        embed_s = time.perf_counter() - start
        if self.labeller is not None:
            rows = self.labeller.top_k(features, 1)
            best = [(row[0].label, round(row[0].score, 6)) for row in rows]
            return features, best, embed_s, 0.0
        if self.classifier is None:
            return features, [], embed_s, 0.0
        # Same decoded pictures, the classifier's own preprocessing.
        start = time.perf_counter()
        rows = self.classifier.predict(images, top_k=1)
        best = [(row[0].label, round(row[0].score, 6)) for row in rows]
        return features, best, embed_s, time.perf_counter() - start

    def _collect(self, done: Future[Passed]) -> None:
        features, best, embed_s, classify_s = done.result()
        self.out.vectors.append(features)
        self.out.labels.extend(label for label, _score in best)
        self.out.label_scores.extend(score for _label, score in best)
        self.out.embed_s += embed_s
        self.out.classify_s += classify_s
