"""A URL-list index job beside a folder job over the same images (issue 27), end to end.

    .venv/bin/python -m bench.url_list                 # 2,000 CIFAR-10 test JPEGs
    .venv/bin/python -m bench.url_list --quick         # 200 of them

It copies ``--images`` JPEGs of ``--source`` (CIFAR-10 test by default, taken
round-robin over its class folders) into one temp folder, serves that folder
with http.server (HTTP/1.1 keep-alive, TCP_NODELAY; bench/fetch_speed.py's
server) in its own process on 127.0.0.1, and starts a private stack
(``visionnet up``, demo profile, default settings) that may read the folder and
whose download guard lets 127.0.0.1 through
(``VISIONNET_SOURCES__ALLOWED_NETWORKS``). One untimed job of each kind over 64
of the images loads the model first. Then, ``--repeats`` rounds, each:

- (a) ``POST /api/v1/index`` of the folder;
- (b) ``POST /api/v1/index`` with the same files as a URL list (a text upload,
  one URL a line): every image downloaded, hashed, thumbnailed and embedded.

Each job goes into a collection of its own: an index job skips only content its
collection holds already (``existing_ids`` of that collection), so every job
embeds every image; the bench checks that the two jobs' ``indexed`` and
``skipped`` counts match and that nothing failed. A job's seconds are from its
creation to its end (server clock); img/s are images indexed over them, URLs/s
(files/s for the folder) the list's entries over them. ``stage_seconds`` are the
job's chunk stages summed over chunks (``download``: each URL's seconds, summed
though they overlap; ``read``: the read stage's wall time, downloads included).
The host's load average is kept per job: the machine is shared.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.client import Api, job_seconds
from bench.fetch_speed import image_server
from bench.images import images_under
from bench.report import spread, write_report
from bench.stack import private_stack, stack_root, wait_until_quiet

WARMUP = 64  # images of the untimed first jobs
STAGES = ("download", "read", "hash", "decode", "embed", "write")


def pick_images(source: Path, count: int, out: Path) -> int:
    """Copy ``count`` of ``source``'s images to ``out`` as NNNNN.jpg, round-robin over its
    folders (so every class is there); returns their bytes."""
    by_folder: dict[Path, list[Path]] = {}
    for path in images_under(source):
        by_folder.setdefault(path.parent, []).append(path)
    lists = list(by_folder.values())
    picked = [files[i] for i in range(max(map(len, lists))) for files in lists if i < len(files)][
        :count
    ]
    if len(picked) < count:
        raise SystemExit(f"{source} has {len(picked)} images, fewer than {count}")
    out.mkdir(parents=True)
    for n, path in enumerate(picked):
        shutil.copyfile(path, out / f"{n:05d}.jpg")
    return sum(p.stat().st_size for p in picked)


def run_job(api: Api, kind: str, collection: str, folder: Path, urls: list[str]) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    if kind == "folder":
        job_id = api.submit(
            "index", json={"source": {"path": str(folder)}, "collection": collection}
        )
    else:
        listed = ("\n".join(urls) + "\n").encode()
        job_id = api.submit(
            "index",
            data={"collection": collection},
            files={"url_list": ("urls.txt", listed, "text/plain")},
        )
    job = api.wait(job_id, timeout=600)
    client_s = time.perf_counter() - start
    result = job["result"]
    if result["failed"] or result["indexed"] + result["skipped"] != result["total"]:
        raise RuntimeError(f"{kind} job {job_id}: {result}")
    seconds = job_seconds(job)
    stages = result.get("stage_seconds", {})
    return {
        "kind": kind,
        "collection": collection,
        "total": result["total"],
        "indexed": result["indexed"],
        "skipped": result["skipped"],
        "seconds": seconds,
        "client_seconds": client_s,
        "img_per_s": result["indexed"] / seconds,
        "entries_per_s": result["total"] / seconds,
        "stage_seconds": stages,
        "load_1min_before": load_before,
        "load_1min_after": os.getloadavg()[0],
    }


def describe(run: dict[str, Any]) -> str:
    st = run["stage_seconds"]
    return (
        f"round {run['round']} {run['kind']}: {run['seconds']:.2f} s, "
        f"{run['img_per_s']:.0f} img/s, indexed {run['indexed']} skipped {run['skipped']}, "
        f"download {st.get('download', 0):.1f} s, read {st.get('read', 0):.2f} s, "
        f"embed {st.get('embed', 0):.2f} s, load {run['load_1min_after']:.1f}"
    )


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    stages = {s: spread([r["stage_seconds"].get(s, 0.0) for r in runs]) for s in STAGES}
    return {
        "seconds": spread([r["seconds"] for r in runs]),
        "img_per_s": spread([r["img_per_s"] for r in runs]),
        "entries_per_s": spread([r["entries_per_s"] for r in runs]),
        "stage_seconds": stages,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", type=Path, default=Path("../shared/datasets/cifar10-test"))
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="200 images")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/url_list.json"))
    args = parser.parse_args(argv)
    count = 200 if args.quick else args.images
    console = Console(width=150)
    t0 = time.perf_counter()
    load_start = os.getloadavg()
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="visionnet-urls-") as tmp_name:
        tmp = Path(tmp_name)
        folder = tmp / "images"
        size = pick_images(args.source.resolve(), count, folder)
        warm = tmp / "warmup"
        warm.mkdir()
        for n in range(WARMUP):
            shutil.copyfile(folder / f"{n:05d}.jpg", warm / f"{n:05d}.jpg")
        with image_server(folder) as port:
            urls = [f"http://127.0.0.1:{port}/{n:05d}.jpg" for n in range(count)]
            allow = {"VISIONNET_SOURCES__ALLOWED_NETWORKS": '["127.0.0.1/32"]'}
            with private_stack(tmp / "stack", [folder, warm], extra_env=allow) as base:
                api = Api(base)
                root = stack_root(tmp / "stack")
                # Untimed: the first job of a stack loads the model (about 15 s here).
                for kind in ("folder", "urls"):
                    wait_until_quiet(root)
                    run_job(api, kind, f"urlbench_warmup_{kind}", warm, urls[:WARMUP])
                for rep in range(args.repeats):
                    for kind in ("folder", "urls"):
                        # Not beside the workers' warm-up or the last job's index building.
                        wait_until_quiet(root)
                        run = run_job(api, kind, f"urlbench_{kind}_{rep}", folder, urls)
                        run["round"] = rep + 1
                        runs.append(run)
                        console.print(describe(run))
    folder_runs = [r for r in runs if r["kind"] == "folder"]
    url_runs = [r for r in runs if r["kind"] == "urls"]
    for a, b in zip(folder_runs, url_runs, strict=True):
        if (a["indexed"], a["skipped"]) != (b["indexed"], b["skipped"]):
            raise RuntimeError(f"the jobs' counts differ: {a} against {b}")
    rows = {"folder": summary(folder_runs), "urls": summary(url_runs)}
    table = Table(title=f"Index job, {count} CIFAR-10 JPEGs ({size / count / 1e3:.1f} kB each), "
                        f"min / median of {args.repeats}")  # fmt: skip
    columns = ("source", "seconds", "img/s", "URLs (files)/s", "download s", "read s", "embed s",
               "write s")  # fmt: skip
    for col in columns:
        table.add_column(col, justify="right")

    def mm(d: dict[str, float], fmt: str) -> str:
        return f"{d['min']:{fmt}} / {d['median']:{fmt}}"

    for kind, row in rows.items():
        st = row["stage_seconds"]
        table.add_row(
            "folder" if kind == "folder" else "URL list",
            mm(row["seconds"], ".2f"),
            mm(row["img_per_s"], ".0f"),
            mm(row["entries_per_s"], ".0f"),
            mm(st["download"], ".1f") if kind == "urls" else "-",
            mm(st["read"], ".2f"),
            mm(st["embed"], ".2f"),
            mm(st["write"], ".2f"),
        )
    console.print(table)
    report = {
        "images": count,
        "source": str(args.source),
        "bytes_per_image": size / count,
        "repeats": args.repeats,
        "server": "http.server, HTTP/1.1 keep-alive, TCP_NODELAY, backlog 128, own process",
        "settings": "demo profile, defaults (sources.download_threads 16, per_host 4)",
        "summary": rows,
        "runs": runs,
        "load_average_start": load_start,
        "load_average_end": os.getloadavg(),
        "shared_host": "the host's cores were shared with other processes (other sessions' "
        "work) during the run; see the load averages",
        "total_s": round(time.perf_counter() - t0, 1),
    }
    write_report(args.out, report, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
