"""One model worker per GPU, each seeing only its own: checked with a stand-in nvidia-smi.

No GPU is needed: a fake ``nvidia-smi`` on PATH lists two, and the workers are
told to run their models on the CPU. What is checked is the launcher: one real
Celery worker process per GPU, its ``CUDA_VISIBLE_DEVICES`` and its node name.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import requests

from tests.conftest import VISIONNET, Stack


def fake_nvidia_smi(folder: Path, count: int) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    smi = folder / "nvidia-smi"
    smi.write_text("#!/bin/sh\n" + "".join(f"echo {i}\n" for i in range(count)))
    smi.chmod(0o755)
    return {"PATH": f"{folder}:{os.environ['PATH']}"}


def test_one_model_worker_per_gpu_each_pinned(stack: Stack, tmp_path: Path) -> None:
    env = {k: v for k, v in stack.env.items() if k != "CUDA_VISIBLE_DEVICES"}
    env.update(fake_nvidia_smi(tmp_path / "bin", 2), VISIONNET_MODELS__DEVICE="cpu")
    launcher = subprocess.Popen(
        [VISIONNET, "worker", "models", "--loglevel", "WARNING"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        names: set[str] = set()
        while time.monotonic() < deadline:
            health = requests.get(f"{stack.base}/api/v1/health", timeout=10).json()
            queues = {q["queue"]: q["workers"] for q in health["queues"]}
            names = {w.split("@")[0] for w in queues.get("models", [])}
            if {"models-gpu0", "models-gpu1"} <= names:
                break
            time.sleep(0.5)
        assert {"models-gpu0", "models-gpu1"} <= names, names
        workers = psutil.Process(launcher.pid).children()
        assert len(workers) == 2
        pinned = sorted(p.environ()["CUDA_VISIBLE_DEVICES"] for p in workers)
        assert pinned == ["0", "1"]
        for p in workers:  # each a worker pinned by its own --gpu
            assert "--gpu" in p.cmdline()
    finally:
        launcher.send_signal(signal.SIGTERM)
        code = launcher.wait(timeout=90)
    assert code == 0
    assert not [p for p in workers if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def test_up_supervises_one_model_worker_per_gpu(tmp_path: Path) -> None:
    from visionnet.config.settings import Settings
    from visionnet.stack import supervisor_config

    env = fake_nvidia_smi(tmp_path / "bin", 3)
    old = os.environ.copy()
    os.environ.pop("CUDA_VISIBLE_DEVICES", None)
    os.environ.update(env)
    try:
        conf = supervisor_config(Settings(data_dir=tmp_path / "data"))  # type: ignore[call-arg]
        os.environ["CUDA_VISIBLE_DEVICES"] = "2"  # the operator's choice wins
        chosen = supervisor_config(Settings(data_dir=tmp_path / "data"))  # type: ignore[call-arg]
    finally:
        os.environ.clear()
        os.environ.update(old)
    for gpu in ("0", "1", "2"):
        assert f"[program:models-gpu{gpu}]" in conf
        assert f"worker models --queues bulk --gpu {gpu}\n" in conf
        assert f'CUDA_VISIBLE_DEVICES="{gpu}"' in conf
    assert "[program:models]" not in conf
    assert "worker interactive --gpu 0\n" in conf  # interactive work on the first GPU
    assert "[program:models-gpu2]" in chosen and "[program:models-gpu0]" not in chosen
