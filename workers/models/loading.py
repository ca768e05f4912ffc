"""Loading transformers models by hub id or local directory, with errors a user can act on."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from visionnet.workers.models.shipped import BUILTIN_PREFIX, builtin_dir, builtin_names

T = TypeVar("T")


class ModelUnavailableError(RuntimeError):
    """A model could not be loaded; the message says which and what to do."""


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolved_ref(ref: str) -> str:
    """Where a ref's files are: a ``builtin:`` name becomes its shipped directory."""
    if not ref.startswith(BUILTIN_PREFIX):
        return ref
    found = builtin_dir(ref)
    if found is None:
        raise ModelUnavailableError(
            f"Unknown built-in model {ref!r}; built-in models: "
            + ", ".join(BUILTIN_PREFIX + n for n in builtin_names())
        )
    return str(found)


def load_pretrained(loader: Callable[..., T], ref: str, *, offline: bool, **kwargs: Any) -> T:
    """Call ``loader.from_pretrained``-style ``loader`` and explain failures.

    Where the hub cannot be reached and the model is not cached, transformers
    raises an OSError about connections; users need to hear which model failed
    and how to point at a local copy instead.
    """
    local = Path(resolved_ref(ref)).expanduser()
    is_local = local.is_dir()
    if not is_local and (ref.startswith(("/", ".", "~")) or local.exists()):
        raise ModelUnavailableError(
            f"Model directory {ref!r} does not exist or is not a directory."
        )
    try:
        return loader(str(local) if is_local else ref, local_files_only=offline, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelUnavailableError(
            f"Could not load model {ref!r}: {exc}. "
            + (
                "The local directory is not a saved transformers model (save_pretrained output)."
                if is_local
                else "The model hub is unreachable or the id is wrong, and the model is not in "
                "the local cache. Save it with save_pretrained on a machine that can reach the "
                "hub and point VISIONNET_MODELS__CLASSIFIER / VISIONNET_MODELS__EMBEDDER at that "
                "directory, or run with VISIONNET_PROFILE=demo."
            )
        ) from exc
