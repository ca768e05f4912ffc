"""Labels and vectors from one forward pass, when the head reads the embedder's vector.

Classify-while-indexing otherwise runs every picture through the same weights
twice when the classifier and the embedder are one checkpoint (the demo
model's default): once for the labels, once for the vector. When the
classifier's head reads exactly the features the embedder returns (the pooled
output: ResNet, ConvNeXt, the demo CifarNet), one pass gives both. Whether it
does is a property of the architecture, not of the settings (a ViT's head
reads the CLS token, its embedder the pooler's output), so it is checked, not
assumed: once per process, on probe pictures, against the embedder itself.
"""

from __future__ import annotations

import logging

import numpy as np
from PIL import Image

from visionnet.workers.models.classifier import Classifier, HeadInputUnavailableError
from visionnet.workers.models.embedder import Embedder

log = logging.getLogger(__name__)

# Vectors are unit length; low-precision passes (bf16 on a GPU) differ in the
# third decimal between batches, a different quantity differs everywhere.
TOLERANCE = 2e-3


def probe_images(side: int) -> list[Image.Image]:
    """Pictures with structure (a gradient, noise), so unrelated features cannot match."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, side, dtype=np.float32)
    gradient = np.stack(
        [
            np.add.outer(ramp, ramp) / 2,
            np.tile(ramp, (side, 1)),
            255 - ramp[:, None].repeat(side, 1),
        ],
        -1,
    )
    noise = rng.integers(0, 256, (side, side, 3))
    return [Image.fromarray(a.astype(np.uint8)) for a in (gradient, noise)]


def gives_embedder_vectors(classifier: Classifier, embedder: Embedder) -> bool:
    """True when ``classifier.predict_with_features`` returns ``embedder.embed``'s vectors."""
    if classifier.ref != embedder.ref or classifier.flip_invariant != embedder.flip_invariant:
        return False
    probes = probe_images(embedder.input_size or 224)
    try:
        _labels, fused = classifier.predict_with_features(probes, top_k=1)
    except HeadInputUnavailableError as exc:
        log.info("two passes for classify-while-indexing: %s", exc)
        return False
    own = embedder.embed(probes)
    same = fused.shape == own.shape and bool(np.allclose(fused, own, atol=TOLERANCE))
    log.info(
        "classify-while-indexing runs %s (%s: the head %s the embedder's vector)",
        "one pass" if same else "two passes",
        classifier.name,
        "reads" if same else "does not read",
    )
    return same
