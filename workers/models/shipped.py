"""Models that ship inside the package, named by ``builtin:<name>`` refs.

The demo profile's settings say ``builtin:demo-cifar10`` rather than a path, so
configuration never needs to know where the model worker keeps its weights.
"""

from __future__ import annotations

from pathlib import Path

BUILTIN_PREFIX = "builtin:"
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
# Trained by ``visionnet train-demo`` on CIFAR-10's training split; see training.json.
SHIPPED_DEMO_DIR = WEIGHTS_DIR / "demo-cifar10"

# CIFAR-10's classes, in the order of their sorted folder names.
DEMO_LABELS = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


def builtin_names() -> list[str]:
    return sorted(p.name for p in WEIGHTS_DIR.iterdir() if (p / "config.json").is_file())


def builtin_dir(ref: str) -> Path | None:
    """The shipped directory a ``builtin:<name>`` ref names; None if no such model ships."""
    name = ref.removeprefix(BUILTIN_PREFIX)
    return WEIGHTS_DIR / name if name in builtin_names() else None
