"""The report of stacks run side by side (``bench.job_cost``, ``bench.index_cost``):
one column per stack, min / median cells, the ratio to the base, Redis' busiest commands."""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

# One stack's summary in, one spread ({"min", "median", ...}) or None out.
Pick = Callable[..., dict[str, float] | None]


def stack_table(title: str, first: str, revs: dict[str, str], labels: list[str]) -> Table:
    table = Table(title=title)
    table.add_column(first)
    for label in labels:
        table.add_column(f"{label} ({revs[label]})", justify="right")
    return table


def cells(results: dict[str, dict[str, Any]], pick: Pick, fmt: str = "{:.2f}") -> list[str]:
    """Each stack's "min / median" of what ``pick`` takes from its summary."""
    out = []
    for res in results.values():
        got = pick(res)
        out.append(f"{fmt.format(got['min'])} / {fmt.format(got['median'])}" if got else "")
    return out


def over_base(
    results: dict[str, dict[str, Any]], rate: str, cpu: str, unit: str, console: Console
) -> dict[str, float] | None:
    """This stack's medians of ``rate`` and ``cpu`` divided by the base's, if one ran."""
    if "base" not in results:
        return None
    this, base = results["this"], results["base"]
    ratio = this[rate]["median"] / base[rate]["median"]
    cost = this[cpu]["median"] / base[cpu]["median"]
    console.print(f"this ÷ base: {unit}/s {ratio:.3f}, CPU per {unit} {cost:.3f} (medians)")
    return {rate: ratio, cpu: cost}


def print_redis_calls(
    results: dict[str, dict[str, Any]], key: str, unit: str, console: Console, fmt: str
) -> None:
    """Each stack's twelve busiest Redis commands (``key``: calls per ``unit``)."""
    for label, res in results.items():
        top = sorted(res[key].items(), key=lambda kv: -kv[1])[:12]
        console.print(
            f"{label}, Redis commands per {unit}: "
            + ", ".join(f"{k} {fmt.format(v)}" for k, v in top)
        )


def add_base_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--base", help="Also run an earlier commit's stack beside this one, runs alternating."
    )


def median_calls(runs: list[dict[str, Any]], key: str) -> dict[str, float]:
    """Per Redis command, the median over ``runs`` of its calls (``run[key]``)."""
    commands = sorted({c for run in runs for c in run[key]})
    return {c: statistics.median(r[key].get(c, 0.0) for r in runs) for c in commands}
