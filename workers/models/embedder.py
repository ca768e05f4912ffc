"""Image embeddings: one L2-normalised vector per image, for cosine search."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL.Image import Image

from visionnet.workers.models.base import ImageModel
from visionnet.workers.models.info import describe
from visionnet.workers.models.loading import load_pretrained
from visionnet.workers.models.runtime import Runtime


class Embedder(ImageModel):
    """Any transformers vision model: CLIP's projection, else the pooled output.

    A classifier checkpoint loaded through AutoModel drops its head, so its
    penultimate features serve as the embedding.
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
        self.model: Any = load_pretrained(loader, ref, offline=offline, dtype=self.dtype)
        self._ready()
        self.info = describe(self.name, config)

    def _warm(self, image: Image) -> None:
        self.embed([image])

    def embed(self, images: list[Image]) -> NDArray[np.float32]:
        """One L2-normalised vector per image (split into smaller passes if memory runs out)."""
        return self.fitting(self._embed, images, np.concatenate)

    def _embed(self, images: Sequence[Image]) -> NDArray[np.float32]:
        import torch

        inputs = self.pixel_values(images)
        with torch.inference_mode():
            out = self.forward(**inputs)
            if getattr(out, "image_embeds", None) is not None:
                feats = out.image_embeds
            elif getattr(out, "pooler_output", None) is not None:
                feats = out.pooler_output
            else:
                feats = out.last_hidden_state[:, 0]
            feats = feats.flatten(1).float()
            feats = torch.nn.functional.normalize(feats, dim=-1)
        return feats.cpu().numpy().astype(np.float32)
