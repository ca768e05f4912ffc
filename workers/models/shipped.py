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


def resolve_builtin(ref: str) -> str | None:
    """The directory of a ``builtin:`` ref, or None when ``ref`` is not one."""
    if not ref.startswith(BUILTIN_PREFIX):
        return None
    name = ref.removeprefix(BUILTIN_PREFIX)
    if name not in builtin_names():
        return ""
    return str(WEIGHTS_DIR / name)
