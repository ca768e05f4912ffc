"""Which GPUs this host has, found without initialising CUDA in this process.

A Celery prefork parent must never touch CUDA: a forked child cannot use a
CUDA context its parent made (pytorch #40403, "Cannot re-initialize CUDA in
forked subprocess"), and even ``torch.cuda.device_count()`` can create one.
So the launcher asks ``nvidia-smi`` (a separate process), and each worker
process it starts sees one GPU through ``CUDA_VISIBLE_DEVICES``; its model is
loaded in the pool process, on the first task.
"""

from __future__ import annotations

import os
import shutil
import subprocess


def visible_gpus() -> list[str]:
    """GPU ids to run one model worker on each; empty on a host without NVIDIA GPUs.

    ``CUDA_VISIBLE_DEVICES``, when set, is the operator's choice and wins.
    """
    chosen = os.environ.get("CUDA_VISIBLE_DEVICES")
    if chosen is not None:
        return [d.strip() for d in chosen.split(",") if d.strip() and d.strip() != "-1"]
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run(
            [smi, "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def parse_gpus(value: str) -> list[str]:
    """``--gpus 0,2`` as a list of ids; ``all`` means every visible GPU."""
    if value == "all":
        return visible_gpus()
    gpus = [v.strip() for v in value.split(",") if v.strip()]
    if not all(g.isdigit() for g in gpus):
        raise ValueError(f"--gpus takes GPU indexes like 0,2 (or all), got {value!r}")
    return gpus
