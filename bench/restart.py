"""Recovery after a kill -9 of the whole embedded stack: from ``visionnet up`` to the job's end.

Each run starts a private stack (demo model), submits one index job over
``--files`` small pictures, waits until ``--kill-at`` of them are done,
SIGKILLs every process of the stack at once (as tests/test_faults.py does),
runs ``visionnet up`` again and times it until the job has succeeded. The job's
remaining work is the files left at the kill over the rate of the same job run
uninterrupted on the restarted stack (a second collection); the overhead is
the recovery minus that. ``--rev`` runs the same on an earlier commit (its own
worktree, this virtual environment), for the before figure.

    .venv/bin/python -m bench.restart --repeats 3
    .venv/bin/python -m bench.restart --rev 3a25b1d --repeats 1   # before
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import requests
from PIL import Image
from rich.console import Console
from rich.table import Table

from bench.client import Api, job_seconds
from bench.report import spread, write_report
from bench.stack import base_worktree, free_port, revision, stop_group
from visionnet.milvus_server import PORT_OFFSETS


def small_pictures(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for n in range(count):
        pixels = rng.integers(0, 255, size=(48, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{n:05d}.jpg", quality=90)
    return folder


class Stack:
    """``visionnet up`` in a folder of its own; killed whole, started again."""

    def __init__(self, workdir: Path, root: Path, extra_env: dict[str, str]) -> None:
        self.workdir = workdir
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("VISIONNET_")}
        self.env.update(
            VISIONNET_DATA_DIR=str(workdir / "data"),
            VISIONNET_ALLOWED_ROOTS=f'["{root.resolve()}"]',
            VISIONNET_WEB__PORT=str(free_port()),
            VISIONNET_MILVUS__EMBEDDED_PORT=str(free_port(len(PORT_OFFSETS))),
            VISIONNET_FLOWER__PORT=str(free_port()),
            PYTHONUNBUFFERED="1",
            **extra_env,
        )
        self.base = f"http://127.0.0.1:{self.env['VISIONNET_WEB__PORT']}"
        self.proc: subprocess.Popen[bytes] | None = None

    def up(self, timeout: float = 600.0) -> None:
        visionnet = str(Path(sys.executable).with_name("visionnet"))
        self.proc = subprocess.Popen(
            [visionnet, "up", "--no-flower"],
            env=self.env,
            stdout=(self.workdir / "stack.log").open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(self.base + "/api/v1/health", timeout=5).status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"stack not healthy after {timeout:.0f} s; see {self.workdir}")

    def kill_everything(self) -> None:
        assert self.proc is not None
        root = psutil.Process(self.proc.pid)
        everyone = [root, *root.children(recursive=True)]
        for p in everyone:
            with contextlib.suppress(psutil.Error):
                p.send_signal(signal.SIGKILL)
        self.proc.wait()
        psutil.wait_procs(everyone[1:], timeout=30)
        self.proc = None

    def down(self) -> None:
        if self.proc is not None:
            stop_group(self.proc, signal.SIGINT, timeout=180)
            self.proc = None


@contextlib.contextmanager
def stack(workdir: Path, root: Path, extra_env: dict[str, str]) -> Iterator[Stack]:
    workdir.mkdir(parents=True, exist_ok=True)
    s = Stack(workdir, root, extra_env)
    try:
        yield s
    finally:
        s.down()


def one_run(
    workdir: Path, folder: Path, files: int, kill_at: float, env: dict[str, str]
) -> dict[str, Any]:
    with stack(workdir, folder, env) as s:
        s.up()
        api = Api(s.base)
        body = {"source": {"path": str(folder)}, "collection": "killed"}
        job_id = api.submit("index", json=body)
        while True:
            job = api.session.get(f"{s.base}/api/v1/jobs/{job_id}", timeout=30).json()
            if job["progress"]["done"] >= kill_at * files or job["state"] not in (
                "running",
                "queued",
            ):
                break
            time.sleep(0.02)
        assert job["state"] == "running", job
        done_at_kill = int(job["progress"]["done"])
        s.kill_everything()
        start = time.monotonic()
        s.up()
        healthy = time.monotonic() - start
        final = api.wait(job_id, timeout=3600)
        recovered = time.monotonic() - start
        result = final["result"]
        assert (result["indexed"], result["failed"]) == (files, 0), result
        # The same job, uninterrupted, on the stack that now runs: its rate.
        clean = api.wait(api.submit("index", json={**body, "collection": "clean"}))
        rate = files / job_seconds(clean)
    remaining = (files - done_at_kill) / rate
    return {
        "done_at_kill": done_at_kill,
        "up_to_healthy_s": healthy,
        "up_to_succeeded_s": recovered,
        "remaining_work_s": remaining,
        "overhead_s": recovered - remaining,
        "uninterrupted_files_per_s": rate,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--kill-at", type=float, default=0.4, help="Fraction done at the kill.")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rev", default=None, help="Run an earlier commit's code instead.")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    console = Console()
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="visionnet-restart-") as tmp_name:
        tmp = Path(tmp_name)
        folder = small_pictures(tmp / "pictures", args.files)
        with contextlib.ExitStack() as ctx:
            env: dict[str, str] = {}
            label = revision()
            if args.rev:
                label, env = ctx.enter_context(base_worktree(args.rev, tmp / "base"))
            for rep in range(args.repeats):
                runs.append(one_run(tmp / f"run{rep}", folder, args.files, args.kill_at, env))
                console.print(f"run {rep + 1}: {runs[-1]}")
    table = Table(
        title=f"Whole-stack kill at {args.kill_at:.0%} of {args.files} files ({label}), s"
    )
    keys = ["up_to_healthy_s", "remaining_work_s", "up_to_succeeded_s", "overhead_s"]
    for key in keys:
        table.add_column(f"{key} min / median")
    table.add_row(
        *[
            f"{min(r[k] for r in runs):.1f} / {statistics.median(r[k] for r in runs):.1f}"
            for k in keys
        ]
    )
    console.print(table)
    report = {"revision": label, "files": args.files, "kill_at": args.kill_at, "runs": runs}
    report.update({key: spread([r[key] for r in runs]) for key in keys})
    write_report(args.out or Path(f"bench/results/restart-{label}.json"), report, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
