"""What a result says about the model that produced it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypedDict

# Set in the config of models built with random weights (test fixtures, untrained
# baselines), so that every result made with them says so.
RANDOM_WEIGHTS_FLAG = "visionnet_random_weights"
RANDOM_WEIGHTS_NOTICE = (
    "This model has random weights (demo profile): its labels and neighbours are meaningless."
)


class ModelInfo(TypedDict):
    name: str
    model_type: str
    random_weights: bool


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


def describe(name: str, config: Any) -> ModelInfo:
    return {
        "name": name,
        "model_type": str(getattr(config, "model_type", "unknown")),
        "random_weights": bool(getattr(config, RANDOM_WEIGHTS_FLAG, False)),
    }
