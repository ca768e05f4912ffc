"""What a result says about the model that produced it."""

from __future__ import annotations

from typing import Any, TypedDict

# Set in the config of models built with random weights (test fixtures, untrained
# baselines), so that every result made with them says so.
RANDOM_WEIGHTS_FLAG = "visionnet_random_weights"
RANDOM_WEIGHTS_NOTICE = (
    "This model has random weights (demo profile): its labels and neighbours are meaningless."
)


class ModelInfo(TypedDict):
    ref: str
    model_type: str
    random_weights: bool


def describe(ref: str, config: Any) -> ModelInfo:
    return {
        "ref": ref,
        "model_type": str(getattr(config, "model_type", "unknown")),
        "random_weights": bool(getattr(config, RANDOM_WEIGHTS_FLAG, False)),
    }
