"""channels_last against the default layout for conv nets on this machine's CPU, side by side.

``python -m bench.memory_format --cifar ../shared/datasets/cifar10-test --photos
../shared/datasets/imagenet-sample-100`` (writes ``bench/results/memory_format.json``).
Decoded pictures, ``Embedder.embed`` as the workers call it, at batch 32 and
batch 1, ``models.channels_last`` on and off; the ways interleaved, each timed
``--repeats`` times:

- the demo model (CifarNet v2, flip averaging on: two passes' worth per picture)
  on CIFAR-10 pictures;
- a ResNet-18-shaped transformers ResNet built from a config (random weights:
  the speed does not depend on them) on photos at 224 px.

It also reports the largest difference between the two layouts' vectors.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from rich.console import Console
from rich.table import Table

from bench.images import images_under
from bench.report import spread, write_report
from visionnet.training.folder import decode_rgb


def resnet18(out: Path) -> Path:
    """A ResNet-18 layout (basic blocks 2-2-2-2, 64-512 wide) with a 224 px processor."""
    from transformers import ResNetForImageClassification

    from visionnet.training.architecture import demo_processor, resnet_config
    from visionnet.workers.models.shipped import DEMO_LABELS

    config = resnet_config(DEMO_LABELS, hidden_sizes=(64, 128, 256, 512), depths=(2, 2, 2, 2))
    ResNetForImageClassification(config).save_pretrained(out)
    demo_processor(224).save_pretrained(out)
    return out


def rate(embedder: Any, images: list[Image.Image], batch: int) -> float:
    start = time.perf_counter()
    for b in range(0, len(images), batch):
        embedder.embed(images[b : b + batch])
    return len(images) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    from visionnet.workers.models.embedder import Embedder
    from visionnet.workers.models.runtime import Runtime

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cifar", type=Path, required=True)
    parser.add_argument("--photos", type=Path, required=True)
    parser.add_argument("--count", type=int, default=1024, help="Pictures per batch-32 timing.")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/memory_format.json"))
    args = parser.parse_args(argv)
    console = Console()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="visionnet-memfmt-") as tmp:
        models = [
            ("demo v2 (CifarNet), CIFAR-10", "builtin:demo-cifar10",
             decode_rgb(images_under(args.cifar)[:args.count])),
            ("ResNet-18 layout, 224 px photos", str(resnet18(Path(tmp) / "r18")),
             decode_rgb(images_under(args.photos)[:args.count // 4])),
        ]  # fmt: skip
        for label, ref, images in models:
            ways = {
                on: Embedder(ref, "cpu", runtime=Runtime(channels_last=on)) for on in (False, True)
            }
            for e in ways.values():  # first passes pay for lazy initialisation
                e.embed(images[:32])
                e.embed(images[:1])
            diff = float(
                np.abs(ways[True].embed(images[:64]) - ways[False].embed(images[:64])).max()
            )
            timings: dict[str, list[float]] = {}
            for _ in range(args.repeats):
                for on, e in ways.items():
                    for batch, n in ((32, len(images)), (1, len(images) // 4)):
                        timings.setdefault(f"{'cl' if on else 'default'}_b{batch}", []).append(
                            rate(e, images[:n], batch)
                        )
            row: dict[str, Any] = {
                "model": label,
                "max_abs_diff": diff,
                **{k: spread(v) for k, v in timings.items()},
            }
            rows.append(row)
            console.print(f"{label}: done")
    table = Table(title="channels_last vs the default layout, CPU (img/s, min / median)")
    for col in ("model", "batch", "default", "channels_last", "gain (medians)"):
        table.add_column(col)
    for row in rows:
        for batch in (32, 1):
            d, c = row[f"default_b{batch}"], row[f"cl_b{batch}"]
            table.add_row(
                row["model"],
                str(batch),
                f"{d['min']:.0f} / {d['median']:.0f}",
                f"{c['min']:.0f} / {c['median']:.0f}",
                f"{c['median'] / d['median']:.2f}x",
            )
    console.print(table)
    write_report(args.out, {"results": rows, "repeats": args.repeats}, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
