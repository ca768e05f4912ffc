"""Redis under sustained small jobs: memory and append-only file, sampled each minute.

One private stack (``visionnet up --no-flower``, demo model). ``--clients``
threads submit one-image classify jobs (JSON paths) back to back, each waiting
for its job's end and reading it once, for ``--minutes``: the highest rate the
stack sustains. Every ``--sample-s`` the embedded Redis's ``used_memory``, key
count and AOF size (INFO memory / persistence / keyspace) are recorded, with
the jobs finished so far. The per-job footprint is the growth of
``used_memory`` over the jobs of the first sampling period, before any record
expires; the steady state is where ``used_memory`` stops growing, reached after
the classify retention (``--env VISIONNET_JOBS__RETENTION_S__CLASSIFY=120``
shows it within a short run). ``--rev`` runs an earlier commit's code.

    .venv/bin/python -m bench.redis_soak --minutes 60
    .venv/bin/python -m bench.redis_soak --minutes 6 --env VISIONNET_JOBS__RETENTION_S__CLASSIFY=120
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.client import Api
from bench.images import expand_photos, images_under
from bench.report import write_report
from bench.stack import base_worktree, private_stack, revision
from visionnet.core.redis_conn import connect

PHOTOS = Path(__file__).resolve().parent.parent.parent / "shared/datasets/imagenet-sample-100"


def sample(r: Any, start: float, finished: int) -> dict[str, Any]:
    memory, persistence = r.info("memory"), r.info("persistence")
    return {
        "t_s": round(time.monotonic() - start, 1),
        "jobs": finished,
        "used_memory": int(memory["used_memory"]),
        "keys": int(r.dbsize()),
        "aof_bytes": int(persistence.get("aof_current_size", 0)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--sample-s", type=float, default=60.0)
    parser.add_argument("--photos", type=Path, default=PHOTOS)
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the stack.")
    parser.add_argument("--rev", default=None, help="Run an earlier commit's code instead.")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    console = Console()
    env = dict(item.split("=", 1) for item in args.env)
    samples: list[dict[str, Any]] = []
    finished = 0
    failed = 0
    lock = threading.Lock()
    with (
        tempfile.TemporaryDirectory(prefix="visionnet-soak-") as tmp_name,
        contextlib.ExitStack() as ctx,
    ):
        tmp = Path(tmp_name)
        label = revision()
        if args.rev:
            label, code = ctx.enter_context(base_worktree(args.rev, tmp / "base"))
            env.update(code)
        folder = expand_photos(images_under(args.photos), 200, tmp / "photos")
        files = images_under(folder)
        base = ctx.enter_context(private_stack(tmp / "stack", [folder], extra_env=env))
        r = connect(f"redis+socket://{tmp / 'stack' / 'data' / 'redis' / 'redis.sock'}")
        api = Api(base)
        api.wait(api.submit("classify", json={"paths": [str(files[0])]}))  # models loaded
        start = time.monotonic()
        stop_at = start + args.minutes * 60

        def client(n: int) -> None:
            nonlocal finished, failed
            own = Api(base)
            i = n
            while time.monotonic() < stop_at:
                try:
                    own.wait(own.submit("classify", json={"paths": [str(files[i % len(files)])]}))
                    with lock:
                        finished += 1
                except (RuntimeError, TimeoutError, OSError):
                    with lock:
                        failed += 1
                i += args.clients

        threads = [threading.Thread(target=client, args=(n,)) for n in range(args.clients)]
        samples.append(sample(r, start, 0))
        for t in threads:
            t.start()
        while time.monotonic() < stop_at:
            time.sleep(min(args.sample_s, max(0.0, stop_at - time.monotonic())))
            samples.append(sample(r, start, finished))
            console.print(samples[-1])
        for t in threads:
            t.join()
    first = samples[1] if len(samples) > 1 else samples[0]
    per_job = (first["used_memory"] - samples[0]["used_memory"]) / max(1, first["jobs"])
    rate = finished / (args.minutes * 60)
    table = Table(title=f"Redis under {args.clients} clients of one-image classify jobs ({label})")
    for col in ("minute", "jobs done", "jobs/s", "used_memory MB", "keys", "AOF MB"):
        table.add_column(col)
    prev = samples[0]
    for s in samples[1:]:
        span = max(1e-9, s["t_s"] - prev["t_s"])
        table.add_row(
            f"{s['t_s'] / 60:.1f}",
            str(s["jobs"]),
            f"{(s['jobs'] - prev['jobs']) / span:.1f}",
            f"{s['used_memory'] / 1e6:.1f}",
            str(s["keys"]),
            f"{s['aof_bytes'] / 1e6:.1f}",
        )
        prev = s
    console.print(table)
    console.print(
        f"{finished} jobs ({failed} failed) at {rate:.1f} jobs/s; {per_job:.0f} bytes of "
        f"used_memory per job over the first period; peak used_memory "
        f"{max(s['used_memory'] for s in samples) / 1e6:.1f} MB"
    )
    report = {
        "revision": label,
        "env": {k: v for k, v in env.items() if k.startswith("VISIONNET_")},
        "minutes": args.minutes,
        "clients": args.clients,
        "jobs": finished,
        "failed": failed,
        "jobs_per_s": rate,
        "bytes_per_job_first_period": per_job,
        "samples": samples,
    }
    write_report(args.out or Path(f"bench/results/redis_soak-{label}.json"), report, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
