"""P2: many one-image classify jobs against one index job over the same images.

Both through the HTTP API of one private stack (``visionnet up --no-flower``,
demo model), each repeated: ``--count`` one-image classify jobs (JSON paths)
submitted at once from 8 client threads, timed from the first submission to
the last job's end; then one index job over the same folder into a fresh
collection, from its creation to its end. The ratio of the two images/s is P2.
``--compare-task-events`` then runs the one-image jobs again on a second stack
whose workers send Celery task events from the start (``flower.task_events``),
as they do once Flower watches.

    .venv/bin/python -m bench.many_jobs --photos ../shared/datasets/imagenet-sample-100
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.client import Api, in_parallel, job_seconds
from bench.images import expand_photos, images_under
from bench.report import spread, write_report
from bench.stack import private_stack


def many_classify_jobs(api: Api, files: list[Path]) -> float:
    start = time.perf_counter()
    ids = in_parallel(lambda f: api.submit("classify", json={"paths": [str(f)]}), files)
    in_parallel(api.wait, ids)
    return len(files) / (time.perf_counter() - start)


def one_index_job(api: Api, folder: Path, collection: str) -> float:
    job = api.wait(api.submit("index", json={"source": {"path": str(folder)},
                                             "collection": collection}))  # fmt: skip
    return float(job["result"]["total"]) / job_seconds(job)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=Path, required=True)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/many_jobs.json"))
    parser.add_argument(
        "--compare-task-events",
        action="store_true",
        help="Also time the one-image jobs on a stack with task events on from the start.",
    )
    args = parser.parse_args(argv)
    console = Console()
    jobs: list[float] = []
    events_on: list[float] = []
    index: list[float] = []
    with tempfile.TemporaryDirectory(prefix="visionnet-p2-") as tmp_name:
        tmp = Path(tmp_name)
        folder = expand_photos(images_under(args.photos), args.count, tmp / "photos")
        files = images_under(folder)
        with private_stack(tmp / "stack", [folder]) as base:
            api = Api(base)
            # Load the model in both workers (interactive and bulk) before timing.
            api.wait(api.submit("classify", json={"paths": [str(files[0])]}))
            one_index_job(api, folder, "p2_warm")
            for rep in range(args.repeats):
                jobs.append(many_classify_jobs(api, files))
                index.append(one_index_job(api, folder, f"p2_{rep}"))
                console.print(f"run {rep + 1}: {args.count} classify jobs {jobs[-1]:.0f} img/s, "
                              f"one index job {index[-1]:.0f} img/s")  # fmt: skip
        if args.compare_task_events:
            on = {"VISIONNET_FLOWER__TASK_EVENTS": "true"}
            with private_stack(tmp / "events-on", [folder], extra_env=on) as base:
                api = Api(base)
                api.wait(api.submit("classify", json={"paths": [str(files[0])]}))
                for rep in range(args.repeats):
                    events_on.append(many_classify_jobs(api, files))
                    console.print(f"task events on, run {rep + 1}: {args.count} classify jobs "
                                  f"{events_on[-1]:.0f} img/s")  # fmt: skip
    ratio = statistics.median(jobs) / statistics.median(index)
    table = Table(title=f"P2: {args.count} one-image classify jobs vs one index job (img/s)")
    for col in ("one-image jobs min / median", "index job min / median", "P2 ratio (medians)"):
        table.add_column(col)
    table.add_row(
        f"{min(jobs):.0f} / {statistics.median(jobs):.0f}",
        f"{min(index):.0f} / {statistics.median(index):.0f}",
        f"{ratio:.2f}",
    )
    if events_on:
        table.add_row(
            f"task events on: {min(events_on):.0f} / {statistics.median(events_on):.0f}",
            "",
            f"off ÷ on: {statistics.median(jobs) / statistics.median(events_on):.2f}",
        )
    console.print(table)
    report: dict[str, Any] = {
        "count": args.count,
        "one_image_jobs": spread(jobs),
        "index_job": spread(index),
        "p2_ratio": ratio,
        "runs": {"one_image_jobs": jobs, "index_job": index},
    }
    if events_on:
        report["one_image_jobs_task_events_on"] = spread(events_on)
        report["runs"]["one_image_jobs_task_events_on"] = events_on
    write_report(args.out, report, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
