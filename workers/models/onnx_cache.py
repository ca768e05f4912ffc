"""Exported ONNX graphs on disk, one folder per key, written once and reused.

A graph is only valid for the weights, exporter and runtime that made it, so
its folder is named by a sha256 over all of them (``key_parts``): new weights
or an upgraded torch, transformers, onnx or onnxruntime give a new key and a
new export; nothing is ever overwritten in place. The interactive and the bulk
worker may load the same model at the same moment, so a graph is built in a
temporary folder beside its final one and renamed into place (atomic on one
filesystem); the loser of that race drops its copy and uses the winner's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
MODEL_FILE = "model.onnx"
META_FILE = "meta.json"
# A new graph of one model in one precision replaces the older ones (new weights).
FAMILY = ("name", "kind", "precision")
VERSIONED = ("onnxruntime", "onnx", "torch", "transformers")


@dataclass(frozen=True)
class Entry:
    """A cached graph's folder; ``built`` when this call exported it."""

    folder: Path
    built: bool

    @property
    def model(self) -> Path:
        return self.folder / MODEL_FILE

    def meta(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.folder / META_FILE).read_text())
        return data


def default_root() -> Path:
    """Where graphs go when the worker names no folder (a script, a test): the user's cache."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "visionnet" / "onnx"


def versions() -> dict[str, str]:
    """The installed versions of everything that shapes an exported graph."""
    found = {}
    for name in VERSIONED:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "absent"
    return found


def tensors_digest(state: Mapping[str, Any]) -> str:
    """sha256 over a loaded model's tensors: what its graph bakes in.

    Not the checkpoint's files: weights a checkpoint lacks are drawn at random at
    each load (the embedder drops a missing pooler for that reason, but any other
    missing layer would do the same), so a key made of the files would hand one
    load the graph of another's. Rewritten files change the tensors and so the
    key all the same.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        digest.update(name.encode() + b"\0")
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(dtype=_byte()).numpy())
    return digest.hexdigest()


def _byte() -> Any:
    import torch

    return torch.uint8


def cache_key(parts: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def ensure(root: Path, parts: Mapping[str, Any], build: Callable[[Path], None]) -> Entry:
    """The folder of ``parts``' graph under ``root``; ``build(folder)`` makes it if absent.

    ``build`` writes ``model.onnx`` into the (temporary) folder it is given;
    ``meta.json`` beside it records the key's parts and the build's seconds.
    """
    key = cache_key(parts)
    final = root / key
    if (final / MODEL_FILE).is_file():
        return Entry(final, built=False)
    root.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{key[:16]}-", dir=root))
    try:
        start = time.perf_counter()
        build(temp)
        seconds = time.perf_counter() - start
        meta = {"key": key, **parts, "build_s": round(seconds, 3), "built_at": time.time()}
        (temp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
        try:
            os.rename(temp, final)
        except OSError:
            if not (final / MODEL_FILE).is_file():
                raise
            shutil.rmtree(temp, ignore_errors=True)  # another process got there first
            return Entry(final, built=False)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    log.info("built %s in %.2fs (%s)", final / MODEL_FILE, seconds, parts.get("name"))
    _drop_older(root, final, parts)
    return Entry(final, built=True)


def _drop_older(root: Path, kept: Path, parts: Mapping[str, Any]) -> None:
    """Delete the graphs ``kept`` replaces (same model, kind and precision), so the cache
    does not grow with every change of weights or versions. A process still running an
    older one keeps it: its session holds the graph in memory, not the file."""
    for folder in root.iterdir():
        if folder == kept or not (folder / META_FILE).is_file():
            continue
        try:
            meta = json.loads((folder / META_FILE).read_text())
        except (OSError, ValueError):
            continue
        if all(meta.get(k) == parts.get(k) for k in FAMILY):
            shutil.rmtree(folder, ignore_errors=True)
