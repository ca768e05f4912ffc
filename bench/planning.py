"""Planning an index job of 1,000,000 file names: memory and time to the first chunk.

Runs the planner's own walk (``iter_images`` + ``chunked``, resumed from the
last file every ``jobs.plan_ahead_chunks`` chunks, as ``plan_index`` does; once
without folder listings and 3 times with them, as plan_index walks now) over
empty files made by the script, in two layouts: nested (1,000 folders of 1,000)
and flat (one folder of 1,000,000). Beside it, the naive plan: list every path,
then chunk. Peak memory is Python's allocations during one step (tracemalloc), measured
apart from the timings.

    python -m bench.planning --files 1000000 --workdir /tmp/plan-bench
"""

from __future__ import annotations

import argparse
import os
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.report import spread, write_report
from visionnet.workers.model_worker.listing import ListingSpill
from visionnet.workers.model_worker.walk import chunked, iter_images

EXTS = [".jpg"]


def make_tree(root: Path, files: int, per_dir: int) -> None:
    marker = root / f".made-{files}"
    if marker.exists():
        return
    for d in range(0, files, per_dir):
        folder = root / f"d{d // per_dir:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(d, min(d + per_dir, files)):
            (folder / f"img_{i:07d}.jpg").touch()
    marker.touch()


def stepped_plan(
    root: Path,
    chunk: int,
    step: int,
    first_only: bool,
    spill: ListingSpill | None = None,
    max_steps: int | None = None,
) -> dict[str, Any]:
    """The planner's walk: ``step`` chunks, then resume after the last file.
    ``spill``: with the listings plan_index keeps (a large folder listed once)."""
    start = time.perf_counter()
    first: float | None = None
    files = steps = 0
    after: str | None = None
    while max_steps is None or steps < max_steps:
        steps += 1
        last = None
        walk = iter_images(root, EXTS, after=after, limit=step * chunk + 1, spill=spill)
        for offset, names in enumerate(chunked(walk, chunk)):
            if first is None:
                first = time.perf_counter() - start
                if first_only:
                    return {"first_chunk_s": first, "files": len(names), "steps": 1}
            files += len(names)
            last = names[-1]
            if offset + 1 == step:
                break
        else:
            break  # the walk ended inside this step
        after = last
    return {
        "first_chunk_s": first,
        "total_s": time.perf_counter() - start,
        "files": files,
        "steps": steps,
    }


def naive_plan(root: Path, chunk: int, first_only: bool) -> dict[str, Any]:
    start = time.perf_counter()
    paths = sorted(str(p) for p in root.rglob("*.jpg"))
    chunks = [paths[i : i + chunk] for i in range(0, len(paths), chunk)]
    first = time.perf_counter() - start
    return {"first_chunk_s": first, "total_s": first, "files": sum(len(c) for c in chunks)}


def measured(run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    tracemalloc.start()
    out = run()
    out["peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return out


def run_layout(console: Console, args: argparse.Namespace, label: str, per_dir: int) -> Any:
    """Times without tracemalloc (it slows Python-level loops several times); memory
    from separate runs under it."""
    root = args.workdir / f"{'flat' if per_dir == args.files else 'nested'}-{args.files}"
    t = time.perf_counter()
    make_tree(root, args.files, per_dir)
    console.print(f"{label}: tree ready in {time.perf_counter() - t:.0f} s")
    repeats = range(args.repeats)
    first = [stepped_plan(root, args.chunk, args.step, first_only=True) for _ in repeats]
    naive = [naive_plan(root, args.chunk, first_only=False) for _ in repeats]
    first_mem = measured(lambda: stepped_plan(root, args.chunk, args.step, first_only=True))
    naive_mem = measured(lambda: naive_plan(root, args.chunk, first_only=False))
    # The whole walk in steps, once: each step reads the folders it is in again.
    whole = stepped_plan(root, args.chunk, args.step, first_only=False)
    console.print(f"{label}: whole walk {whole['total_s']:.1f} s in {whole['steps']} steps")
    # And as plan_index walks now: a folder larger than a step listed once, by
    # the second step; its peak memory from the first two steps under tracemalloc.
    spill = ListingSpill(args.workdir / "listings" / root.name)
    listed = [stepped_plan(root, args.chunk, args.step, False, spill) for _ in repeats]
    spill.remove()
    console.print(f"{label}: with listings {listed[0]['total_s']:.1f} s")
    two_mem = measured(lambda: stepped_plan(root, args.chunk, args.step, False, spill, 2))
    spill.remove()
    return {
        "listed_walk_s": spread([r["total_s"] for r in listed]),
        "listed_walk": listed[0],
        "two_steps_listing_peak_mb": two_mem["peak_mb"],
        "first_chunk_s": spread([r["first_chunk_s"] for r in first]),
        "first_step_peak_mb": first_mem["peak_mb"],
        "whole_walk": whole,
        "naive_first_chunk_s": spread([r["first_chunk_s"] for r in naive]),
        "naive_peak_mb": naive_mem["peak_mb"],
    }


def _print(console: Console, args: argparse.Namespace, results: dict[str, Any]) -> None:
    table = Table(title=f"planning {args.files:,} names (chunk {args.chunk}, step {args.step})")
    for col in (
        "layout",
        "first chunk s (min/med)",
        "peak MB, first step",
        "whole walk s / steps",
        "with listings: whole walk s (min/med)",
        "peak MB, the step that lists",
        "naive: first chunk s (min/med)",
        "naive peak MB",
    ):
        table.add_column(col)
    for label, r in results.items():
        w = r["whole_walk"]
        table.add_row(
            label,
            f"{r['first_chunk_s']['min']:.3f} / {r['first_chunk_s']['median']:.3f}",
            f"{r['first_step_peak_mb']:.1f}",
            f"{w['total_s']:.1f} / {w['steps']}",
            f"{r['listed_walk_s']['min']:.1f} / {r['listed_walk_s']['median']:.1f}",
            f"{r['two_steps_listing_peak_mb']:.1f}",
            f"{r['naive_first_chunk_s']['min']:.1f} / {r['naive_first_chunk_s']['median']:.1f}",
            f"{r['naive_peak_mb']:.0f}",
        )
    console.print(table)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=1_000_000)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/plan-bench"))
    ap.add_argument("--chunk", type=int, default=256)
    ap.add_argument("--step", type=int, default=16, help="jobs.plan_ahead_chunks")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("bench/results/planning.json"))
    args = ap.parse_args()
    console = Console()
    layouts = {"nested (1,000 per folder)": 1000, "flat (one folder)": args.files}
    results: dict[str, Any] = {}
    for label, per_dir in layouts.items():
        results[label] = run_layout(console, args, label, per_dir)
    _print(console, args, results)
    write_report(
        args.out,
        {
            "command": f"python -m bench.planning --files {args.files} --workdir {args.workdir}",
            "files": args.files,
            "chunk": args.chunk,
            "step": args.step,
            "cpu_count": os.cpu_count(),
            "results": results,
        },
        console,
    )


if __name__ == "__main__":
    main()
