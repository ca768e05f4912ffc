"""Where a one-image job's CPU goes: CPU time per job in each program of the stack.

P2 and P3 are bound by what a small job costs outside the model. This bench
runs ``--count`` one-image classify jobs (JSON paths, 8 client threads) against
a private stack (``visionnet up --no-flower``, demo model) and divides by the
number of jobs: the CPU time each program spent (all its processes, from
``psutil``), the client's own, and the Redis commands run (``INFO
commandstats``). Repeated ``--repeats`` times on the same stack, after a warm-up
job; min and median per program. With ``--base REV`` a second stack runs the
code of an earlier commit beside this one (``bench.ab``'s way), the runs
alternating, each after both stacks went quiet: the before and after of a
change to the per-job path, side by side.

    .venv/bin/python -m bench.job_cost --photos ../shared/datasets/imagenet-sample-100
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psutil
import redis
from rich.console import Console

from bench.client import Api
from bench.images import expand_photos, images_under
from bench.many_jobs import many_classify_jobs
from bench.report import spread
from bench.side_by_side import (
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
    api: Api, files: list[Path], procs: list[psutil.Process], db: redis.Redis
) -> dict[str, Any]:
    cpu_before, calls_before = cpu_seconds(procs), redis_calls(db)
    jobs_per_s = many_classify_jobs(api, files)  # P2's own submission: one image per job
    cpu = cpu_seconds(procs)
    calls = redis_calls(db)
    calls.subtract(calls_before)
    n = len(files)
    return {
        "jobs_per_s": jobs_per_s,
        "cpu_ms_per_job": {k: (cpu[k] - cpu_before[k]) * 1000 / n for k in cpu},
        "redis_calls_per_job": {k: v / n for k, v in calls.items() if v > 0},
    }


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Min and median over runs of each program's CPU per job, the total and jobs/s."""
    programs = sorted({k for run in runs for k in run["cpu_ms_per_job"]})
    totals = [sum(run["cpu_ms_per_job"].values()) for run in runs]
    rates = [run["jobs_per_s"] for run in runs]
    return {
        "cpu_ms_per_job": {
            p: spread([r["cpu_ms_per_job"].get(p, 0.0) for r in runs]) for p in programs
        },
        "cpu_ms_per_job_total": spread(totals),
        "jobs_per_s": spread(rates),
        "redis_calls_per_job": median_calls(runs, "redis_calls_per_job"),
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=Path, required=True)
    parser.add_argument("--count", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=3)
    add_base_option(parser)
    parser.add_argument("--out", type=Path, default=Path("bench/results/job_cost.json"))
    args = parser.parse_args(argv)
    console = Console()
    revs = {"this": revision()}
    with tempfile.TemporaryDirectory(prefix="visionnet-cost-") as tmp_name, ExitStack() as ctx:
        tmp = Path(tmp_name)
        folder = expand_photos(images_under(args.photos), args.count, tmp / "photos")
        files = images_under(folder)
        envs: dict[str, dict[str, str]] = {"this": {}}
        if args.base:
            revs["base"], envs["base"] = ctx.enter_context(
                base_worktree(args.base, tmp / "base-tree")
            )
        stacks = start_stacks(ctx, tmp, envs, [folder])
        for api, _procs, _db in stacks.values():
            api.wait(api.submit("classify", json={"paths": [str(files[0])]}))  # load the model

        def run(label: str, rep: int, stack: Stack) -> dict[str, Any]:
            api, procs, db = stack
            got = one_run(api, files, procs, db)
            total = sum(got["cpu_ms_per_job"].values())
            console.print(f"{label} run {rep + 1}: {got['jobs_per_s']:.1f} jobs/s, "
                          f"{total:.1f} ms CPU per job")  # fmt: skip
            return got

        runs = alternate(tmp, stacks, args.repeats, run)
    results = {label: summary(label_runs) for label, label_runs in runs.items()}
    table = stack_table(
        f"CPU per one-image classify job ({args.count} jobs, 8 clients)",
        "ms CPU per job, min / median",
        revs,
        list(results),
    )
    programs = results["this"]["cpu_ms_per_job"]
    for program in sorted(programs, key=lambda p: -programs[p]["median"]):
        table.add_row(program, *cells(results, lambda r, p=program: r["cpu_ms_per_job"].get(p)))
    table.add_row("all", *cells(results, lambda r: r["cpu_ms_per_job_total"], "{:.1f}"))
    table.add_row("jobs/s", *cells(results, lambda r: r["jobs_per_s"], "{:.1f}"))
    table.add_row(
        "Redis commands per job (median)",
        *[f"{sum(r['redis_calls_per_job'].values()):.1f}" for r in results.values()],
    )
    console.print(table)
    report: dict[str, Any] = {"count": args.count, "revisions": revs, "stacks": results}
    finish(results, report, args.out, console, unit="job", calls_fmt="{:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
