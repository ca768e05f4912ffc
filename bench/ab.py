"""An index job on this checkout against the same job on an earlier commit, side by side.

``python -m bench.ab --base HEAD~1 --folder ../shared/datasets/cifar10-test``
(writes ``bench/results/ab.json``). Two private stacks run at once: one on
this checkout, one on a git worktree of ``--base`` (its code first on
``PYTHONPATH``, the same virtual environment). The same index job runs on each
in turn, ``--repeats`` times, each after both stacks went quiet, so that drift
and the idle stacks weigh on both alike. For changes whose effect is a few
percent, smaller than the spread between separate runs on this machine.
``--env KEY=VALUE`` (repeatable) sets settings on this checkout's stack only:
with ``--base HEAD``, a setting against its default on the same code
(``--env VISIONNET_JOBS__CHUNK_SIZE=512``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.client import Api, job_seconds
from bench.report import spread, write_report
from bench.stack import base_worktree, private_stack, revision, stack_root, wait_until_quiet


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", required=True, help="The commit to compare against.")
    parser.add_argument("--folder", type=Path, required=True, help="Images to index.")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/ab.json"))
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="A setting for this checkout's stack only (repeatable).",
    )
    args = parser.parse_args(argv)
    this_env = dict(item.split("=", 1) for item in args.env)
    console = Console()
    folder = args.folder.resolve()
    this_rev = revision()
    rates: dict[str, list[float]] = {"this": [], "base": []}
    stages: dict[str, list[dict[str, float]]] = {"this": [], "base": []}
    with tempfile.TemporaryDirectory(prefix="visionnet-ab-") as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        base_rev, base_env = stack.enter_context(base_worktree(args.base, tmp / "base-tree"))
        bases = {
            "this": stack.enter_context(private_stack(tmp / "this", [folder], extra_env=this_env)),
            "base": stack.enter_context(private_stack(tmp / "base", [folder], extra_env=base_env)),
        }
        roots = [stack_root(tmp / name) for name in bases]
        for rep in range(args.repeats):
            for name, url in bases.items():
                for root in roots:
                    wait_until_quiet(root)
                api = Api(url)
                body = {"source": {"path": str(folder)}, "collection": f"ab_{rep}"}
                job = api.wait(api.submit("index", json=body))
                result = job["result"]
                assert result["indexed"] == result["total"], result
                rates[name].append(result["total"] / job_seconds(job))
                stages[name].append(result.get("stage_seconds", {}))
                console.print(f"{name} run {rep + 1}: {rates[name][-1]:.1f} img/s")
    ratio = statistics.median(rates["this"]) / statistics.median(rates["base"])
    settings = " ".join(args.env)
    this_label = f"{this_rev} {settings}".strip()
    table = Table(title=f"Index job over {folder.name}: {this_label} vs {base_rev} (img/s)")
    for col in ("code", "runs", "min / median", "this ÷ base (medians)"):
        table.add_column(col)
    for name, rev in (("this", this_label), ("base", base_rev)):
        table.add_row(
            f"{name} ({rev})",
            ", ".join(f"{r:.0f}" for r in rates[name]),
            f"{min(rates[name]):.0f} / {statistics.median(rates[name]):.0f}",
            f"{ratio:.3f}" if name == "this" else "",
        )
    console.print(table)
    report: dict[str, Any] = {
        "folder": str(folder),
        "this": this_rev,
        "this_env": this_env,
        "base": base_rev,
        "rates": {name: spread(values) for name, values in rates.items()},
        "runs": rates,
        "stage_seconds": stages,
        "this_over_base": ratio,
    }
    write_report(args.out, report, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
