"""How far a model's outputs moved from torch fp32 when it runs another way, measured at load.

bf16 and int8 change the vectors a little; how little depends on the model, so
it is measured rather than assumed: the same probe pictures go through the fp32
reference and through the chosen runtime/precision, and the two sets of
outputs are compared the way a user would notice a difference: the cosine of
each picture's two vectors, whether a search among the probes finds the same 10
neighbours (recall@10), and for classifiers whether the best label is the same.

The worker logs the result and publishes it in ``GET /api/v1/models``; a
collection takes vectors of another runtime/precision of its model only when
``models.allow_mixed_vectors`` is on and recall@10 here is at least
``MIXING_RECALL``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw

log = logging.getLogger(__name__)

# Enough pictures that recall@10 resolves 1/640, few enough that a ViT-B on 2 CPU
# cores spends seconds (256 took a 512-px conv net a minute of each worker start).
PROBES = 64
NEIGHBOURS = 10
# A collection mixes vectors of two settings of one model only above this.
MIXING_RECALL = 0.99
# What a precision "auto" picked must keep among the probes to stay. recall@10
# among 64 probes overstates it (their neighbours lie further apart than a
# collection's): bf16 kept 0.992 among them and 0.967 among 2,000 CIFAR-10
# pictures for the demo model, 0.998 and 0.994 for a ViT-B/32, 0.997 and 0.991
# for a CLIP B/32 (bench/RESULTS.md, CPU runtimes). 0.995 keeps the two whose
# pictures' recall reaches 0.99 and not the one whose does not.
AUTO_PROBE_RECALL = 0.995
REFERENCE = "torch/fp32"


class Agreement(TypedDict):
    """A chosen setting's outputs against the fp32 reference's, on ``probes`` pictures."""

    against: str
    probes: int
    cosine_min: float
    cosine_mean: float
    recall_at_10: float
    # Share of probes whose best label is the same (classifiers; None for embedders).
    top1: float | None


@dataclass(frozen=True)
class Outputs:
    """Unit vectors per probe (an embedder's vectors, a classifier's logits) and best labels."""

    vectors: NDArray[np.float32]
    top1: NDArray[np.int64] | None = None


def probe_pictures(count: int = PROBES, side: int = 64) -> list[Image.Image]:
    """Deterministic pictures with structure: shapes of many colours on gradients, some noisy.

    Unlike flat colours, they spread over a model's space the way photos do, so
    their nearest neighbours are a fair test of a search's order.
    """
    rng = np.random.default_rng(25)
    ramp = np.linspace(0.0, 1.0, side, dtype=np.float32)
    pictures = []
    for i in range(count):
        a, b = rng.integers(0, 256, (2, 3)).astype(np.float32)
        angle = rng.uniform(0, np.pi)
        t = np.add.outer(ramp * np.sin(angle), ramp * np.cos(angle))
        t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
        pixels = a + (b - a) * t[..., None]
        if i % 4 == 3:
            pixels = pixels + rng.normal(0, 24, pixels.shape)
        picture = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(picture)
        for _ in range(int(rng.integers(1, 5))):
            x0, y0 = (int(v) for v in rng.integers(0, side * 3 // 4, 2))
            w, h = (int(v) for v in rng.integers(side // 8, side // 2, 2))
            box = (x0, y0, min(x0 + w, side - 1), min(y0 + h, side - 1))
            fill = tuple(int(v) for v in rng.integers(0, 256, 3))
            shape = int(rng.integers(0, 3))
            if shape == 0:
                draw.ellipse(box, fill=fill)
            elif shape == 1:
                draw.rectangle(box, fill=fill)
            else:
                draw.line(box, fill=fill, width=max(1, side // 16))
        pictures.append(picture)
    return pictures


def model_outputs(model: Any, pictures: Sequence[Image.Image]) -> Outputs:
    """What ``model`` (an Embedder or a Classifier, as it runs now) makes of ``pictures``.

    A classifier's vectors are the features its head reads (what one pass stores
    as an index job's vectors), so a classifier and an embedder of one checkpoint
    measure the same quantity and "auto" gives both the same precision; its
    logits where no head input can be seen.
    """
    if hasattr(model, "embed"):
        return Outputs(np.asarray(model.embed(list(pictures)), dtype=np.float32))
    import torch

    from visionnet.workers.models.classifier import HeadInputUnavailableError

    try:
        rows, features = model.predict_with_features(list(pictures), top_k=1)
    except HeadInputUnavailableError:
        logits = model.fitting(model._logits, list(pictures), torch.cat).float()
        vectors = torch.nn.functional.normalize(logits, dim=-1).cpu().numpy()
        return Outputs(vectors.astype(np.float32), logits.argmax(-1).cpu().numpy())
    label2id = {str(k): int(v) for k, v in model.model.config.label2id.items()}
    best = np.array([label2id.get(row[0].label, -1) for row in rows], dtype=np.int64)
    return Outputs(np.asarray(features, dtype=np.float32), best)


def neighbours(vectors: NDArray[np.float32], k: int = NEIGHBOURS) -> NDArray[np.int64]:
    """Each row's k nearest other rows by cosine, nearest first."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    k = min(k, len(vectors) - 1)
    return np.argsort(-similarity, axis=1, kind="stable")[:, :k].astype(np.int64)


def measure(reference: Outputs, candidate: Outputs, against: str = REFERENCE) -> Agreement:
    """``candidate``'s outputs on the probes compared with ``reference``'s."""
    ref = reference.vectors / np.linalg.norm(reference.vectors, axis=1, keepdims=True)
    got = candidate.vectors / np.linalg.norm(candidate.vectors, axis=1, keepdims=True)
    cosine = np.sum(ref * got, axis=1)
    want, found = neighbours(ref), neighbours(got)
    k = want.shape[1]
    recall = (
        float(np.mean([len(set(w) & set(f)) / k for w, f in zip(want, found, strict=True)]))
        if k
        else 1.0
    )
    top1 = None
    if reference.top1 is not None and candidate.top1 is not None:
        top1 = float(np.mean(reference.top1 == candidate.top1))
    return {
        "against": against,
        "probes": len(ref),
        "cosine_min": round(float(cosine.min()), 6),
        "cosine_mean": round(float(cosine.mean()), 6),
        "recall_at_10": round(recall, 6),
        "top1": None if top1 is None else round(top1, 6),
    }


def measure_change(model: Any, change: Callable[[], None], count: int = PROBES) -> Agreement:
    """``model``'s outputs on the probes, then ``change()`` (cast to bf16, swap in an
    onnxruntime forward...), then again: how far the change moved them."""
    pictures = probe_pictures(count, side=getattr(model, "input_size", None) or 64)
    reference = model_outputs(model, pictures)
    change()
    return measure(reference, model_outputs(model, pictures))


def summary(agreement: Agreement | None) -> str:
    """One phrase for a log line."""
    if agreement is None:
        return "nothing to measure against (it is the fp32 reference)"
    text = (
        f"against {agreement['against']} on {agreement['probes']} probes: cosine min "
        f"{agreement['cosine_min']:.4f} mean {agreement['cosine_mean']:.4f}, recall@10 "
        f"{agreement['recall_at_10']:.3f}"
    )
    if agreement["top1"] is not None:
        text += f", top-1 agreement {agreement['top1']:.3f}"
    return text


def recall_against_fp32(label: str, agreement: Agreement | None) -> float | None:
    """recall@10 of a setting's vectors against fp32's: 1 for the reference itself,
    None where it was not measured (such vectors never mix)."""
    if label == REFERENCE:
        return 1.0
    return None if agreement is None else agreement["recall_at_10"]


def may_mix(label: str, agreement: Agreement | None, allowed: bool) -> bool:
    """Whether vectors made as ``label`` may join a collection of another runtime/precision
    of their model: ``models.allow_mixed_vectors`` and a measured recall@10 >= 0.99."""
    recall = recall_against_fp32(label, agreement)
    return allowed and recall is not None and recall >= MIXING_RECALL
