"""Image classification: preprocess, forward, top-k, as separate steps."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from PIL.Image import Image

from visionnet.workers.models.base import ImageModel, mirror_mean
from visionnet.workers.models.info import describe
from visionnet.workers.models.loading import load_pretrained
from visionnet.workers.models.runtime import Runtime


@dataclass(frozen=True)
class Prediction:
    label: str
    score: float


class Classifier(ImageModel):
    """A transformers image classifier loaded once per worker process."""

    kind = "classifier"

    def __init__(
        self, ref: str, device: str, *, offline: bool = False, runtime: Runtime | None = None
    ) -> None:
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        super().__init__(ref, device, offline=offline, runtime=runtime)
        self.processor: Any = load_pretrained(
            AutoImageProcessor.from_pretrained, ref, offline=offline
        )
        self.model: Any = load_pretrained(
            AutoModelForImageClassification.from_pretrained, ref, offline=offline, dtype=self.dtype
        )
        self._ready(self.model.config)
        self.info = describe(self.name, self.model.config, flip_invariant=self.flip_invariant)
        self._multi_label = self.model.config.problem_type == "multi_label_classification"

    def _warm(self, image: Image) -> None:
        self.predict([image], 1)

    def predict(self, images: list[Image], top_k: int) -> list[list[Prediction]]:
        """Top-k labels per image (split into smaller passes if memory runs out)."""

        def run(batch: Sequence[Image]) -> list[list[Prediction]]:
            return self._predict(batch, top_k)

        return self.fitting(run, images, lambda parts: [row for part in parts for row in part])

    def _predict(self, images: Sequence[Image], top_k: int) -> list[list[Prediction]]:
        import torch

        inputs = self.pixel_values(images)
        with torch.inference_mode():
            logits = self.forward(**inputs).logits.float()
            if self.flip_invariant:
                logits = mirror_mean(logits)
        probs = logits.sigmoid() if self._multi_label else logits.softmax(dim=-1)
        k = min(top_k, probs.shape[-1])
        scores, indices = probs.topk(k, dim=-1)
        id2label = self.model.config.id2label
        return [
            [
                Prediction(label=str(id2label.get(int(i), str(int(i)))), score=float(s))
                for s, i in zip(row_scores.tolist(), row_indices.tolist(), strict=True)
            ]
            for row_scores, row_indices in zip(scores, indices, strict=True)
        ]

    def top1(self, images: list[Image]) -> list[str]:
        """The best label per image: what accuracy is measured on."""
        return [row[0].label for row in self.predict(images, top_k=1)]
