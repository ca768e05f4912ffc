"""Image embeddings: one L2-normalised vector per image, for cosine search."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL.Image import Image

from visionnet.workers.models.base import ImageModel, mirror_mean
from visionnet.workers.models.info import describe
from visionnet.workers.models.loading import ModelUnavailableError, load_pretrained
from visionnet.workers.models.runtime import Runtime

log = logging.getLogger(__name__)


class TextSearchUnavailableError(ValueError):
    """The embedder has no text encoder; the message says which model and why."""


class Embedder(ImageModel):
    """Any transformers vision model: CLIP's projection, else the pooled output.

    A classifier checkpoint loaded through AutoModel drops its head, so its
    penultimate features serve as the embedding. A CLIP directory that has a
    tokenizer also loads its text tower, so a text query lands in the same
    space as the images (text-to-image search).
    """

    kind = "embedder"
    # Vectors are L2-normalised, so cosine similarity is a dot product.
    normalized = True

    def __init__(
        self, ref: str, device: str, *, offline: bool = False, runtime: Runtime | None = None
    ) -> None:
        from transformers import AutoConfig, AutoImageProcessor, AutoModel

        super().__init__(ref, device, offline=offline, runtime=runtime)
        config: Any = load_pretrained(AutoConfig.from_pretrained, ref, offline=offline)
        self.processor: Any = load_pretrained(
            AutoImageProcessor.from_pretrained, ref, offline=offline
        )
        if config.model_type == "clip":
            from transformers import CLIPVisionModelWithProjection

            loader: Any = CLIPVisionModelWithProjection.from_pretrained
        else:
            loader = AutoModel.from_pretrained
        self.model: Any
        self.model, loading = load_pretrained(
            loader, ref, offline=offline, dtype=self.dtype, output_loading_info=True
        )
        self._drop_untrained_pooler(loading.get("missing_keys", []))
        self._ready(config)
        self.tokenizer: Any = None
        self.text_model: Any = None
        if config.model_type == "clip":
            self._load_text_tower(ref, offline)
        self.info = describe(
            self.name,
            config,
            flip_invariant=self.flip_invariant,
            text_search=self.text_model is not None,
            choice=self.choice,
            agreement=self.agreement,
        )

    def _drop_untrained_pooler(self, missing: list[str]) -> None:
        """Vectors from the CLS token where the checkpoint has no pooler weights.

        A classifier's checkpoint (ViTForImageClassification, say) loaded as a
        backbone has no pooler: transformers draws its weights at random at every
        load, so the vectors would change from one start of the worker to the
        next and match no collection made before. Its head reads the final CLS
        token, which is what the embedder then returns (``_embed``'s fallback).
        """
        if getattr(self.model, "pooler", None) is None:
            return
        if any(key.split(".")[0] == "pooler" for key in missing):
            log.warning(
                "%s: the checkpoint has no pooler weights (a classifier's?): its vectors "
                "are the final CLS token, not a pooler drawn at random at each load",
                self.name,
            )
            self.model.pooler = None

    def _load_text_tower(self, ref: str, offline: bool) -> None:
        from transformers import AutoTokenizer, CLIPTextModelWithProjection

        try:
            self.tokenizer = load_pretrained(AutoTokenizer.from_pretrained, ref, offline=offline)
        except ModelUnavailableError as exc:
            log.warning("%s: no tokenizer, so no text search (%s)", self.name, exc)
            return
        text_model: Any = load_pretrained(
            CLIPTextModelWithProjection.from_pretrained, ref, offline=offline
        )
        self.text_model = text_model.to(self.device).eval()
        if self.autocast_dtype is not None:  # the image tower's precision (stays fp32 on ORT)
            self.lower(self.text_model)

    def _warm(self, image: Image) -> None:
        self.embed([image])

    def embed(self, images: list[Image]) -> NDArray[np.float32]:
        """One L2-normalised vector per image (split into smaller passes if memory runs out)."""
        return self.fitting(self._embed, images, np.concatenate)

    def _embed(self, images: Sequence[Image]) -> NDArray[np.float32]:
        import torch

        inputs = self.pixel_values(images)
        with torch.inference_mode(), self.precision_scope():
            out = self.forward(**inputs)
            if getattr(out, "image_embeds", None) is not None:
                feats = out.image_embeds
            elif getattr(out, "pooler_output", None) is not None:
                feats = out.pooler_output
            else:
                feats = out.last_hidden_state[:, 0]
            feats = feats.flatten(1).float()
            if self.flip_invariant:
                feats = mirror_mean(feats)
            feats = torch.nn.functional.normalize(feats, dim=-1)
        return feats.cpu().numpy().astype(np.float32)

    def embed_text(self, texts: list[str]) -> NDArray[np.float32]:
        """One L2-normalised vector per text, in the images' space (CLIP only)."""
        import torch

        if self.text_model is None:
            raise TextSearchUnavailableError(
                f"the embedder {self.name} ({self.info['model_type']}) has no text encoder: "
                "text search needs a CLIP model saved with its tokenizer"
            )
        inputs = self.tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=int(self.text_model.config.max_position_embeddings),
            return_tensors="pt",
        ).to(self.device)
        with torch.inference_mode(), self.precision_scope():
            feats = self.text_model(**inputs).text_embeds.float()
            feats = torch.nn.functional.normalize(feats, dim=-1)
        return feats.cpu().numpy().astype(np.float32)
