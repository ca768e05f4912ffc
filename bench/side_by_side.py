"""Private stacks run side by side (``bench.job_cost``, ``bench.index_cost``): started
together, their runs alternating after all went quiet, each program's CPU and
Redis' commands counted, and the report: one column per stack, min / median
cells, the ratio to the base, Redis' busiest commands."""

from __future__ import annotations

import argparse
import statistics
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psutil
import redis
from rich.console import Console
from rich.table import Table

from bench.client import Api
from bench.report import write_report
from bench.stack import private_stack, stack_root, wait_until_quiet

# A running stack: its API, its processes, its Redis.
Stack = tuple[Api, list[psutil.Process], redis.Redis]
# One run on one stack: (its label, the repeat, the stack) in, the run's figures out.
Run = Callable[[str, int, Stack], dict[str, Any]]
# One stack's summary in, one spread ({"min", "median", ...}) or None out.
Pick = Callable[..., dict[str, float] | None]


def program_of(cmdline: list[str]) -> str:
    """A stack process's program, as supervisord names it (all web processes are "web")."""
    line = " ".join(cmdline)
    for marker, name in (("redis-server", "redis"), ("milvus", "milvus"),
                         ("supervisord", "supervisord"), ("stack-guard", "guard")):  # fmt: skip
        if marker in line:
            return name
    if "visionnet" in line and "worker" in cmdline:
        return "worker " + cmdline[cmdline.index("worker") + 1]
    if "visionnet" in line and "web" in cmdline:
        return "web"
    return "other"


def stack_processes(workdir: Path) -> list[psutil.Process]:
    """supervisord of the stack in ``workdir`` and every process under it."""
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if "supervisord" in cmdline and str(workdir) in cmdline:
            return [proc, *proc.children(recursive=True)]
    raise RuntimeError(f"no supervisord for {workdir}")


def cpu_seconds(procs: list[psutil.Process]) -> Counter[str]:
    totals: Counter[str] = Counter()
    for proc in procs:
        try:
            times = proc.cpu_times()
            totals[program_of(proc.cmdline())] += times.user + times.system
        except psutil.Error:
            continue  # gone: its time is lost, and the table says which programs it saw
    me = psutil.Process().cpu_times()
    totals["bench client"] = me.user + me.system
    return totals


def redis_calls(client: redis.Redis) -> Counter[str]:
    stats: dict[str, Any] = client.info("commandstats")
    return Counter({k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()})


def start_stacks(
    ctx: ExitStack, tmp: Path, envs: dict[str, dict[str, str]], roots: list[Path]
) -> dict[str, Stack]:
    """One private stack per label, under ``tmp / label``, with that label's environment."""
    stacks = {}
    for label, env in envs.items():
        api = Api(ctx.enter_context(private_stack(tmp / label, roots, extra_env=env)))
        db = redis.Redis(unix_socket_path=str(tmp / label / "data/redis/redis.sock"))
        stacks[label] = (api, stack_processes(tmp / label), db)
    return stacks


def alternate(
    tmp: Path, stacks: dict[str, Stack], repeats: int, run: Run
) -> dict[str, list[dict[str, Any]]]:
    """``repeats`` rounds of ``run`` on each stack in turn, each after every stack went
    quiet, so that drift hits all of them alike."""
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in stacks}
    roots = [stack_root(tmp / label) for label in stacks]
    for rep in range(repeats):
        for label, stack in stacks.items():
            for root in roots:
                wait_until_quiet(root)
            runs[label].append(run(label, rep, stack))
    return runs


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


def finish(
    results: dict[str, dict[str, Any]],
    report: dict[str, Any],
    out: Path,
    console: Console,
    *,
    unit: str,
    calls_fmt: str,
) -> None:
    """The ratios to the base (if one ran) into ``report``, each stack's busiest Redis
    commands printed, and ``report`` written to ``out``. The summaries' keys follow
    ``unit``: ``<unit>s_per_s``, ``cpu_ms_per_<unit>_total``, ``redis_calls_per_<unit>``."""
    ratios = over_base(results, f"{unit}s_per_s", f"cpu_ms_per_{unit}_total", unit, console)
    if ratios is not None:
        report["this_over_base"] = ratios
    print_redis_calls(results, f"redis_calls_per_{unit}", unit, console, calls_fmt)
    write_report(out, report, console)


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
