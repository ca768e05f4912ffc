"""Load-time agreements kept on disk, so a worker's restart does not measure them again.

Measuring a lower precision against fp32 runs the probes through the model
twice; a 512-px conv net spends about ten seconds on it on 2 CPU cores, and a
worker that restarts after a crash paid it again each time. The result only
depends on the loaded tensors, the setting, the probes and the library
versions, so it is kept in one small JSON file per sha256 of all of them (the
loaded tensors, not the files: weights a checkpoint lacks are drawn at random
at each load). New weights, another setting or an upgrade give a new key.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, cast

from visionnet.workers.models.agreement import PROBES, Agreement
from visionnet.workers.models.onnx_cache import cache_key, tensors_digest, versions

log = logging.getLogger(__name__)
# Bumped when the probes or the measure change, so older results are not reused.
MEASURE_VERSION = 1
# Runtime fields that say where things are kept, not how the model runs.
_PATHS = ("onnx_cache", "agreement_cache")


def agreement_key(model: Any, label: str) -> str:
    """The key of ``model``'s agreement as ``label``, from its fp32 tensors as loaded."""
    parts = {
        "name": model.name,
        "kind": model.kind,
        "tensors": tensors_digest(model.model.state_dict()),
        "setting": label,
        "device": model.device.split(":")[0],
        "runtime": {k: v for k, v in asdict(model.runtime).items() if k not in _PATHS},
        "probes": PROBES,
        "measure": MEASURE_VERSION,
        **versions(),
    }
    return cache_key(parts)


def load(root: Path, key: str) -> Agreement | None:
    """The kept agreement of ``key``, or None (absent, or unreadable: measured again)."""
    path = root / f"{key}.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("ignoring the unreadable agreement file %s: %s", path, exc)
        return None
    return cast(Agreement, data)


def save(root: Path, key: str, agreement: Agreement) -> None:
    """Write ``agreement`` under ``key`` atomically (two workers may load the model at once)."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{key[:16]}-", dir=root)
        with os.fdopen(fd, "w") as f:
            json.dump(agreement, f, sort_keys=True)
        os.replace(temp, root / f"{key}.json")
    except OSError as exc:  # a read-only data dir costs a measurement per start, no more
        log.warning("could not keep the agreement under %s: %s", root, exc)
