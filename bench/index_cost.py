"""Where an index job's CPU goes: CPU time per file in each program of the stack.

P1 (the index job ÷ the model alone) is bound, for a model as fast as the demo
net, by what a file costs outside the model: reading, decoding, staging,
writing. This bench indexes ``--files`` CIFAR-10 pictures (a folder job, demo
model) into a fresh collection per run on a private stack (``visionnet up
--no-flower``) and divides each program's CPU time (all its processes, from
``psutil``) by the number of files, with the job's own stage seconds and the
Redis commands per file (``INFO commandstats``), and the CPU each program used
in ``--settle`` seconds after the job ended (the store's last flush and index
build: work the job leaves behind). Repeated ``--repeats`` times
on the same stack, each after it went quiet; min and median. With ``--base REV``
a second stack runs an earlier commit's code beside this one (``bench.ab``'s
way), the runs alternating: the before and after of a change to the per-file
path, side by side.

    .venv/bin/python -m bench.index_cost --cifar ../shared/datasets/cifar10-test
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psutil
import redis
from rich.console import Console

from bench.client import Api, job_seconds
from bench.cpu_runtime import demo_subset
from bench.images import images_under
from bench.report import spread
from bench.side_by_side import (
    Pick,
    Stack,
    add_base_option,
    alternate,
    cells,
    cpu_seconds,
    finish,
    median_calls,
    redis_calls,
    stack_table,
    start_stacks,
)
from bench.stack import base_worktree, revision


def one_run(
    api: Api,
    folder: Path,
    n: int,
    collection: str,
    procs: list[psutil.Process],
    db: redis.Redis,
    settle_s: float,
) -> dict[str, Any]:
    cpu_before, calls_before = cpu_seconds(procs), redis_calls(db)
    job = api.wait(
        api.submit("index", json={"source": {"path": str(folder)}, "collection": collection})
    )
    cpu = cpu_seconds(procs)
    calls = redis_calls(db)
    calls.subtract(calls_before)
    # What the job left to do after it ended (the store's last flush and index build).
    time.sleep(settle_s)
    settled = cpu_seconds(procs)
    assert job["state"] == "succeeded", job
    result = job["result"]
    assert result["indexed"] == n == result["total"], result
    return {
        "files_per_s": n / job_seconds(job),
        "cpu_ms_per_file": {k: (cpu[k] - cpu_before[k]) * 1000 / n for k in cpu},
        "cpu_ms_per_file_after": {
            k: (settled[k] - cpu[k]) * 1000 / n for k in settled if k != "bench client"
        },
        "stage_ms_per_file": {k: v * 1000 / n for k, v in result.get("stage_seconds", {}).items()},
        "redis_calls_per_file": {k: v / n for k, v in calls.items() if v > 0},
    }


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Min and median over runs of each program's CPU per file (during the job and in
    the seconds after it), each stage, the totals, files/s."""
    programs = sorted({k for run in runs for k in run["cpu_ms_per_file"]})
    stages = sorted({k for run in runs for k in run["stage_ms_per_file"]})
    return {
        "cpu_ms_per_file": {
            p: spread([r["cpu_ms_per_file"].get(p, 0.0) for r in runs]) for p in programs
        },
        "cpu_ms_per_file_total": spread([sum(r["cpu_ms_per_file"].values()) for r in runs]),
        "cpu_ms_per_file_after": {
            p: spread([r["cpu_ms_per_file_after"].get(p, 0.0) for r in runs]) for p in programs
        },
        "cpu_ms_per_file_with_after": spread(
            [
                sum(r["cpu_ms_per_file"].values()) + sum(r["cpu_ms_per_file_after"].values())
                for r in runs
            ]
        ),
        "stage_ms_per_file": {
            s: spread([r["stage_ms_per_file"].get(s, 0.0) for r in runs]) for s in stages
        },
        "files_per_s": spread([r["files_per_s"] for r in runs]),
        "redis_calls_per_file": median_calls(runs, "redis_calls_per_file"),
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cifar", type=Path, required=True, help="CIFAR-10 test, <class>/ dirs.")
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--settle", type=float, default=8.0, help="Seconds of CPU counted after each job."
    )
    add_base_option(parser)
    parser.add_argument(
        "--env", action="append", default=[], help="KEY=VALUE for every stack (a setting)."
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="LABEL:KEY=VALUE[,KEY=VALUE]: one more stack of this code with these settings.",
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/index_cost.json"))
    args = parser.parse_args(argv)
    console = Console()
    revs = {"this": revision()}
    extra = dict(item.split("=", 1) for item in args.env)
    with tempfile.TemporaryDirectory(prefix="visionnet-icost-") as tmp_name, ExitStack() as ctx:
        tmp = Path(tmp_name)
        folder = demo_subset(args.cifar.resolve(), args.files, tmp / "cifar")
        n = len(images_under(folder))
        envs: dict[str, dict[str, str]] = {"this": dict(extra)}
        for variant in args.variant:
            label, _, pairs = variant.partition(":")
            envs[label] = {**extra, **dict(p.split("=", 1) for p in pairs.split(",") if p)}
            revs[label] = revs["this"]
        if args.base:
            revs["base"], base_env = ctx.enter_context(base_worktree(args.base, tmp / "base-tree"))
            envs["base"] = {**base_env, **extra}
        stacks = start_stacks(ctx, tmp, envs, [folder])

        def run(label: str, rep: int, stack: Stack) -> dict[str, Any]:
            api, procs, db = stack
            collection = f"icost_{rep}_" + label.replace("-", "_")
            got = one_run(api, folder, n, collection, procs, db, args.settle)
            total = sum(got["cpu_ms_per_file"].values())
            console.print(f"{label} run {rep + 1}: {got['files_per_s']:.0f} files/s, "
                          f"{total:.2f} ms CPU per file")  # fmt: skip
            return got

        runs = alternate(tmp, stacks, args.repeats, run)
    results = {label: summary(label_runs) for label, label_runs in runs.items()}
    table = stack_table(
        f"CPU per file of an index job ({n} CIFAR-10 files, demo model)",
        "ms per file, min / median",
        revs,
        list(results),
    )

    def row(name: str, pick: Pick, fmt: str = "{:.3f}") -> None:
        table.add_row(name, *cells(results, pick, fmt))

    programs = results["this"]["cpu_ms_per_file"]
    for program in sorted(programs, key=lambda p: -programs[p]["median"]):
        row(f"CPU: {program}", lambda r, p=program: r["cpu_ms_per_file"].get(p))
    row("CPU: all", lambda r: r["cpu_ms_per_file_total"])
    after = results["this"]["cpu_ms_per_file_after"]
    for program in sorted(after, key=lambda p: -after[p]["median"])[:3]:
        row(
            f"CPU in {args.settle:.0f} s after: {program}",
            lambda r, p=program: r["cpu_ms_per_file_after"].get(p),
        )
    row("CPU: all, with after", lambda r: r["cpu_ms_per_file_with_after"])
    stages = results["this"]["stage_ms_per_file"]
    for stage in sorted(stages, key=lambda s: -stages[s]["median"]):
        row(f"stage: {stage}", lambda r, s=stage: r["stage_ms_per_file"].get(s))
    row("files/s", lambda r: r["files_per_s"], "{:.0f}")
    table.add_row(
        "Redis commands per file (median)",
        *[f"{sum(r['redis_calls_per_file'].values()):.2f}" for r in results.values()],
    )
    console.print(table)
    report: dict[str, Any] = {
        "files": n, "revisions": revs, "env": envs, "stacks": results,
    }  # fmt: skip
    finish(results, report, args.out, console, unit="file", calls_fmt="{:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
