r"""Preprocessing a batch: the processor picture by picture against tensor ops over the batch.

    python -m bench.preprocess --cifar ../shared/datasets/cifar10-test \
        --photos ../shared/datasets/imagenet-sample-100

(writes ``bench/results/preprocess.json``). The demo model's processor
(transformers' PIL ViT processor: resize to 32x32, rescale, normalise) and
``BatchPreprocessor`` built from it (``workers/models/batch_preprocess.py``),
over decoded pictures in batches of ``--batch``, the two ways interleaved,
each timed ``--repeats`` times over every picture: CPU ms per picture (this
process, ``time.process_time``; one thread) and the largest absolute
difference between their values. The photos are decoded whole, so both
resize them from full size (the index job drafts JPEGs first).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from rich.console import Console
from rich.table import Table

from bench.images import images_under
from bench.report import spread, write_report
from visionnet.training.folder import decode_rgb
from visionnet.workers.models.batch_preprocess import BatchPreprocessor
from visionnet.workers.models.loading import load_pretrained
from visionnet.workers.models.shipped import SHIPPED_DEMO_DIR


def cpu_ms_per_picture(run: Callable[[list[Image.Image]], Any], images: list[Image.Image],
                       batch: int) -> float:  # fmt: skip
    start = time.process_time()
    for at in range(0, len(images), batch):
        run(images[at : at + batch])
    return (time.process_time() - start) / len(images) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cifar", type=Path, required=True)
    parser.add_argument("--photos", type=Path, required=True)
    parser.add_argument("--count", type=int, default=2000, help="CIFAR pictures used.")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/preprocess.json"))
    args = parser.parse_args(argv)
    console = Console()
    torch.set_num_threads(1)
    from transformers import AutoImageProcessor

    processor: Any = load_pretrained(
        AutoImageProcessor.from_pretrained, str(SHIPPED_DEMO_DIR), offline=True
    )
    batched = BatchPreprocessor.for_processor(processor)
    assert batched is not None, type(processor).__name__
    ways: dict[str, Callable[[list[Image.Image]], Any]] = {
        "processor": lambda b: processor(images=b, return_tensors="pt")["pixel_values"],
        "batch tensor ops": lambda b: batched(b, "cpu", torch.float32),
    }
    sets = {
        "CIFAR-10 test, 32x32": decode_rgb(images_under(args.cifar)[: args.count]),
        "ImageNet sample photos, full size": decode_rgb(images_under(args.photos)),
    }
    results: dict[str, Any] = {}
    table = Table(title=f"CPU ms per picture, batches of {args.batch} (min / median of "
                        f"{args.repeats})")  # fmt: skip
    for col in ("pictures", *ways, "processor ÷ batch (medians)", "max abs difference"):
        table.add_column(col)
    for name, images in sets.items():
        times: dict[str, list[float]] = {way: [] for way in ways}
        for _ in range(args.repeats):
            for way, run in ways.items():
                times[way].append(cpu_ms_per_picture(run, images, args.batch))
        sample = images[: args.batch]
        diff = float((ways["processor"](sample) - ways["batch tensor ops"](sample)).abs().max())
        stats = {way: spread(values) for way, values in times.items()}
        ratio = stats["processor"]["median"] / stats["batch tensor ops"]["median"]
        results[name] = {"pictures": len(images), "cpu_ms": stats, "runs": times,
                         "ratio": ratio, "max_abs_diff": diff}  # fmt: skip
        table.add_row(
            f"{name} ({len(images)})",
            *(f"{s['min']:.3f} / {s['median']:.3f}" for s in stats.values()),
            f"{ratio:.1f}x",
            f"{diff:.1e}",
        )
    console.print(table)
    write_report(args.out, {"batch": args.batch, "repeats": args.repeats, "results": results},
                 console)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
