"""Labels from words: images scored against texts through a CLIP embedder's two towers.

CLIP's zero-shot classifier is a softmax over the labels of ``logit_scale`` times the
cosine between the image's vector and each label text's vector. The scale is a
trained weight of the full CLIP checkpoint (``logit_scale``, stored as its log);
the embedder loads the two towers without it, so it is read from the checkpoint's
weights here. Where a checkpoint has none, 100 is used: the value trained CLIP
models reach (OpenAI's clamp), so scores look like CLIP's own.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from visionnet.workers.models.classifier import Prediction
from visionnet.workers.models.embedder import Embedder

log = logging.getLogger(__name__)

# CLIP's trained temperature (exp of its clamped logit_scale): the fallback.
DEFAULT_LOGIT_SCALE = 100.0
_WEIGHTS = "model.safetensors"
_SHARDS = "model.safetensors.index.json"


def checkpoint_logit_scale(ref: str, *, offline: bool = False) -> float | None:
    """exp(logit_scale) from a CLIP checkpoint's safetensors weights; None if absent."""
    from safetensors import safe_open
    from transformers.utils.hub import cached_file

    def find(name: str) -> str | None:
        local = Path(ref) / name
        if local.is_file():
            return str(local)
        try:
            found: Any = cached_file(
                ref,
                name,
                local_files_only=offline,
                _raise_exceptions_for_missing_entries=False,
                _raise_exceptions_for_connection_errors=False,
            )
        except (OSError, ValueError):
            return None
        return str(found) if found else None

    weights = find(_WEIGHTS)
    if weights is None:
        index = find(_SHARDS)
        if index is None:
            return None
        shard = json.loads(Path(index).read_text())["weight_map"].get("logit_scale")
        weights = find(shard) if shard else None
        if weights is None:
            return None
    with safe_open(weights, framework="pt") as f:
        if "logit_scale" not in f.keys():  # noqa: SIM118 (safe_open has no __contains__)
            return None
        return float(math.exp(float(f.get_tensor("logit_scale").float().item())))


@dataclass(frozen=True)
class WordLabeller:
    """Label texts turned into vectors once, then any number of image vectors scored."""

    labels: list[str]
    text_vectors: NDArray[np.float32]  # one L2-normalised row per label
    logit_scale: float

    @classmethod
    def build(cls, embedder: Embedder, labels: list[str], texts: list[str]) -> WordLabeller:
        """Raises TextSearchUnavailableError when the embedder has no text tower."""
        vectors = embedder.embed_text(texts)
        return cls(list(labels), vectors, logit_scale_of(embedder))

    def probabilities(self, image_vectors: NDArray[np.float32]) -> NDArray[np.float32]:
        """Per image, a probability per label (each row sums to 1)."""
        return softmax_scores(image_vectors, self.text_vectors, self.logit_scale)

    def top_k(self, image_vectors: NDArray[np.float32], k: int) -> list[list[Prediction]]:
        probs = self.probabilities(image_vectors)
        order = np.argsort(-probs, axis=1, kind="stable")[:, : min(k, len(self.labels))]
        return [
            [Prediction(label=self.labels[i], score=float(row[i])) for i in picks]
            for row, picks in zip(probs, order, strict=True)
        ]

    def describe(self) -> dict[str, Any]:
        return {"count": len(self.labels), "logit_scale": round(self.logit_scale, 4)}


def softmax_scores(
    image_vectors: NDArray[np.float32], text_vectors: NDArray[np.float32], scale: float
) -> NDArray[np.float32]:
    """softmax(scale * cosine) over the labels; both sides are L2-normalised already."""
    logits = scale * (np.asarray(image_vectors, np.float64) @ np.asarray(text_vectors).T)
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    probs: NDArray[np.float32] = (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)
    return probs


def logit_scale_of(embedder: Embedder) -> float:
    """The embedder's CLIP temperature (read once per checkpoint and process)."""
    return _logit_scale(embedder.ref, embedder.offline, embedder.name)


@lru_cache(maxsize=8)
def _logit_scale(ref: str, offline: bool, name: str) -> float:
    try:
        found = checkpoint_logit_scale(ref, offline=offline)
    except (OSError, ValueError, RuntimeError) as exc:
        log.warning("%s: logit_scale not readable (%r); using 100", name, exc)
        found = None
    return DEFAULT_LOGIT_SCALE if found is None else found
