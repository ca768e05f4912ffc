"""What a result says about the model that produced it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypedDict

from visionnet.workers.models.agreement import Agreement
from visionnet.workers.models.choice import Choice

# Set in the config of models built with random weights (test fixtures, untrained
# baselines), so that every result made with them says so.
RANDOM_WEIGHTS_FLAG = "visionnet_random_weights"
# Set in a model's config when, under ``models.flip_invariant = "auto"``, its
# outputs should not change when an image is mirrored (the demo model sets it).
FLIP_INVARIANT_FLAG = "visionnet_flip_invariant"
RANDOM_WEIGHTS_NOTICE = (
    "This model has random weights (demo profile): its labels and neighbours are meaningless."
)


class ModelInfo(TypedDict):
    name: str
    model_type: str
    random_weights: bool
    flip_invariant: bool
    text_search: bool
    # What ran it ("torch" | "onnxruntime"), in which precision, and why ("auto" explained).
    runtime: str
    precision: str
    runtime_reason: str
    # Its outputs against torch fp32's, measured at load (None: it is torch fp32).
    agreement: Agreement | None


def public_name(ref: str) -> str:
    """The name results and collections give a model: never a path on the server.

    A hub id and a ``builtin:`` name are names already; a local directory is
    named ``local:<its folder name>``.
    """
    if ref.startswith("builtin:"):
        return ref
    path = Path(ref).expanduser()
    if ref.startswith(("/", ".", "~")) or path.is_dir():
        return f"local:{path.resolve().name}"
    return ref


def describe(
    name: str,
    config: Any,
    *,
    flip_invariant: bool = False,
    text_search: bool = False,
    choice: Choice | None = None,
    agreement: Agreement | None = None,
) -> ModelInfo:
    choice = choice or Choice("torch", "fp32", "as set")
    return {
        "name": name,
        "model_type": str(getattr(config, "model_type", "unknown")),
        "random_weights": bool(getattr(config, RANDOM_WEIGHTS_FLAG, False)),
        "flip_invariant": flip_invariant,
        "text_search": text_search,
        "runtime": choice.runtime,
        "precision": choice.precision,
        "runtime_reason": choice.reason,
        "agreement": agreement,
    }
