"""Image classification: preprocess, forward, top-k, as separate steps."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL.Image import Image

from visionnet.workers.models.base import ImageModel, mirror_mean
from visionnet.workers.models.info import describe
from visionnet.workers.models.loading import load_pretrained
from visionnet.workers.models.runtime import Runtime


@dataclass(frozen=True)
class Prediction:
    label: str
    score: float


class HeadInputUnavailableError(RuntimeError):
    """The classifier has no ``classifier`` head module whose input a hook can see."""


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
        # What the head read in this thread's last pass, when asked (see ``predict_with_features``).
        self._head_input = threading.local()
        self._head_hooked = False
        self._multi_label = self.model.config.problem_type == "multi_label_classification"
        self._ready(self.model.config)
        self.info = describe(
            self.name,
            self.model.config,
            flip_invariant=self.flip_invariant,
            choice=self.choice,
            agreement=self.agreement,
        )

    def _warm(self, image: Image) -> None:
        self.predict([image], 1)

    def predict(self, images: list[Image], top_k: int) -> list[list[Prediction]]:
        """Top-k labels per image (split into smaller passes if memory runs out)."""

        def run(batch: Sequence[Image]) -> list[list[Prediction]]:
            return self._predict(batch, top_k)

        return self.fitting(run, images, lambda parts: [row for part in parts for row in part])

    def predict_with_features(
        self, images: list[Image], top_k: int
    ) -> tuple[list[list[Prediction]], NDArray[np.float32]]:
        """Top-k labels and, from the same forward pass, the L2-normalised features the
        head read (flip-averaged like the logits).

        Whether those are the embedder's vectors depends on the architecture: see
        ``visionnet.workers.models.one_pass``, which checks it before anyone relies on it.
        Raises HeadInputUnavailableError when no head input can be seen.
        """

        def run(
            batch: Sequence[Image],
        ) -> tuple[list[list[Prediction]], NDArray[np.float32]]:
            return self._predict_and_features(batch, top_k)

        def join(
            parts: list[tuple[list[list[Prediction]], NDArray[np.float32]]],
        ) -> tuple[list[list[Prediction]], NDArray[np.float32]]:
            return [row for rows, _ in parts for row in rows], np.concatenate([f for _, f in parts])

        return self.fitting(run, images, join)

    def _predict_and_features(
        self, images: Sequence[Image], top_k: int
    ) -> tuple[list[list[Prediction]], NDArray[np.float32]]:
        import torch

        if not getattr(self.forward, "gives_head_input", False):  # onnxruntime's output has it
            self._hook_head()
        self._head_input.want, self._head_input.value = True, None
        try:
            logits = self._logits(images)
        finally:
            self._head_input.want = False
        seen = self._head_input.value
        self._head_input.value = None
        if seen is None:  # a compiled forward, for one, runs no module hooks
            raise HeadInputUnavailableError(f"{self.name}: the head's input was not seen")
        with torch.inference_mode():
            feats = seen.flatten(1).float()
            if self.flip_invariant:
                feats = mirror_mean(feats)
            feats = torch.nn.functional.normalize(feats, dim=-1)
        return self._top_k(logits, top_k), feats.cpu().numpy().astype(np.float32)

    def _hook_head(self) -> None:
        """Keep the head's input for threads that ask for it (installed once)."""
        import torch

        if self._head_hooked:
            return
        head = getattr(self.model, "classifier", None)
        if not isinstance(head, torch.nn.Module):
            raise HeadInputUnavailableError(f"{self.name}: no classifier head module")
        state = self._head_input

        def keep(_module: Any, args: tuple[Any, ...]) -> None:
            if getattr(state, "want", False) and args:
                state.value = args[0]

        head.register_forward_pre_hook(keep)
        self._head_hooked = True

    def _logits(self, images: Sequence[Image]) -> Any:
        import torch

        inputs = self.pixel_values(images)
        with torch.inference_mode(), self.precision_scope():
            out = self.forward(**inputs)
            head_input = getattr(out, "head_input", None)
            if head_input is not None and getattr(self._head_input, "want", False):
                self._head_input.value = head_input
            logits = out.logits.float()
            if self.flip_invariant:
                logits = mirror_mean(logits)
        return logits

    def _predict(self, images: Sequence[Image], top_k: int) -> list[list[Prediction]]:
        return self._top_k(self._logits(images), top_k)

    def _top_k(self, logits: Any, top_k: int) -> list[list[Prediction]]:
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
