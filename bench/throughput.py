"""P1: an index job's images/s against the model alone, on the same model, batch and machine.

For each image folder, in one run, three timings, each repeated (min and
median reported):

- model alone: the embedder on images decoded beforehand, batches of 32, one
  pass at a time on torch's default threads; and the same two passes at a time,
  each on half the cores (how a CPU model worker runs an index chunk since
  ``models.bulk_passes_at_once``). P1 is reported against both, and against the
  faster of the two;
- naive loop: read, SHA-256, decode (full size) and embed, one process, in
  batches of 32: what the job must clearly beat;
- index job: ``POST /api/v1/index`` on a private stack (``visionnet up``,
  demo model, defaults: batch 32, chunk 256) into a fresh collection, from
  the job's creation to its end; its stage seconds are kept.

    .venv/bin/python -m bench.throughput --cifar ../shared/datasets/cifar10-test \\
        --photos ../shared/datasets/imagenet-sample-100

``--photos`` are expanded to ``--photo-count`` distinct full-size JPEGs (each
original re-cropped by a few pixels and re-encoded), so no two files share an id.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from PIL import Image
from rich.console import Console
from rich.table import Table

from bench.client import Api, job_seconds
from bench.images import expand_photos, images_under
from bench.report import spread, write_report
from bench.stack import private_stack, stack_root, wait_until_quiet
from visionnet.training.folder import decode_rgb
from visionnet.workers.models.embedder import Embedder

BATCH = 32


def model_alone(embedder: Embedder, files: list[Path], passes: int = 1) -> float:
    """Images/s of the embedder alone, ``passes`` passes at a time (cores / passes threads each)."""
    import torch

    pictures = decode_rgb(files)
    default = torch.get_num_threads()
    if passes > 1:
        torch.set_num_threads(max(1, default // passes))
    starts = list(range(0, len(pictures), BATCH))

    def lane(n: int) -> None:
        for b in starts[n::passes]:
            embedder.embed(pictures[b : b + BATCH])

    start = time.perf_counter()
    lanes = [threading.Thread(target=lane, args=(n,)) for n in range(passes)]
    for thread in lanes:
        thread.start()
    for thread in lanes:
        thread.join()
    rate = len(pictures) / (time.perf_counter() - start)
    torch.set_num_threads(default)
    return rate


def naive_loop(embedder: Embedder, files: list[Path]) -> float:
    start = time.perf_counter()
    for b in range(0, len(files), BATCH):
        batch = []
        for f in files[b : b + BATCH]:
            data = f.read_bytes()
            hashlib.sha256(data).hexdigest()
            with Image.open(f) as im:
                batch.append(im.convert("RGB"))
        embedder.embed(batch)
    return len(files) / (time.perf_counter() - start)


def index_job(api: Api, folder: Path, collection: str) -> tuple[float, dict[str, Any]]:
    job = api.wait(
        api.submit("index", json={"source": {"path": str(folder)}, "collection": collection})
    )
    assert job["state"] == "succeeded", job
    result = job["result"]
    assert result["indexed"] == result["total"], result
    return result["total"] / job_seconds(job), result.get("stage_seconds", {})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cifar", type=Path, help="Folder of small JPEGs (CIFAR-10 test).")
    parser.add_argument("--photos", type=Path, help="Folder of full-size photos to expand.")
    parser.add_argument("--photo-count", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/throughput.json"))
    args = parser.parse_args(argv)
    console = Console()
    t0 = time.perf_counter()
    results: list[dict[str, Any]] = []
    embedder = Embedder("builtin:demo-cifar10", "cpu")
    with tempfile.TemporaryDirectory(prefix="visionnet-tput-") as tmp_name:
        tmp = Path(tmp_name)
        sets: list[tuple[str, Path]] = []
        if args.cifar:
            sets.append(("CIFAR-10 test, 32x32 JPEG", args.cifar.resolve()))
        if args.photos:
            photos = expand_photos(images_under(args.photos), args.photo_count, tmp / "photos")
            sets.append((f"{args.photo_count} full-size photos (ImageNet sample)", photos))
        with private_stack(tmp / "stack", [folder for _, folder in sets]) as base:
            api = Api(base)
            root = stack_root(tmp / "stack")
            for label, folder in sets:
                files = images_under(folder)
                alone, alone2, naive, job, stages = [], [], [], [], []
                for rep in range(args.repeats):
                    # Not beside the workers' warm-up or the last job's index building.
                    wait_until_quiet(root)
                    alone.append(model_alone(embedder, files))
                    alone2.append(model_alone(embedder, files, passes=2))
                    naive.append(naive_loop(embedder, files))
                    rate, stage_s = index_job(api, folder, f"tput_{len(results)}_{rep}")
                    job.append(rate)
                    stages.append(stage_s)
                    console.print(f"{label} run {rep + 1}: model {alone[-1]:.0f} (two at once "
                                  f"{alone2[-1]:.0f}), naive {naive[-1]:.0f}, job {job[-1]:.0f} "
                                  "img/s")  # fmt: skip
                results.append({
                    "set": label, "files": len(files), "model_alone": spread(alone),
                    "model_alone_two_passes": spread(alone2),
                    "naive_loop": spread(naive), "index_job": spread(job),
                    "p1_vs_one_pass": statistics.median(job) / statistics.median(alone),
                    "p1_vs_two_passes": statistics.median(job) / statistics.median(alone2),
                    "p1_ratio": statistics.median(job)
                    / max(statistics.median(alone), statistics.median(alone2)),
                    "job_vs_naive": statistics.median(job) / statistics.median(naive),
                    "stage_seconds": stages,
                })  # fmt: skip
    table = Table(title="P1: index job vs the model alone (img/s, min / median of runs)")
    columns = ("images", "model alone", "two passes at once", "naive loop", "index job",
               "job/model (one, two)", "P1 job/best model", "job/naive")  # fmt: skip
    for col in columns:
        table.add_column(col)
    for r in results:
        table.add_row(
            f"{r['set']} ({r['files']})",
            f"{r['model_alone']['min']:.0f} / {r['model_alone']['median']:.0f}",
            f"{r['model_alone_two_passes']['min']:.0f} / "
            f"{r['model_alone_two_passes']['median']:.0f}",
            f"{r['naive_loop']['min']:.0f} / {r['naive_loop']['median']:.0f}",
            f"{r['index_job']['min']:.0f} / {r['index_job']['median']:.0f}",
            f"{r['p1_vs_one_pass']:.2f}, {r['p1_vs_two_passes']:.2f}",
            f"{r['p1_ratio']:.2f}",
            f"{r['job_vs_naive']:.2f}",
        )
    console.print(table)
    report = {
        "results": results,
        "repeats": args.repeats,
        "total_s": round(time.perf_counter() - t0, 1),
    }
    write_report(args.out, report, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
