"""Classify while indexing: labels and vectors in one forward pass against two, side by side.

``python -m bench.one_pass --images ../shared/datasets/cifar10-test`` (writes
``bench/results/one_pass.json``). Decoded pictures, the demo model (or
``--model DIR``), batch 32, on this machine's device; each way timed 3 times,
interleaved so that drift hits all of them:

- embed only: what an index job without labels costs;
- two passes: ``Embedder.embed`` then ``Classifier.predict`` (before one pass);
- one pass: ``Classifier.predict_with_features`` (labels and vectors together).

It also checks, on every picture, that the one pass gave the embedder's vectors
and the classifier's labels.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from rich.console import Console
from rich.table import Table

from bench.images import images_under
from bench.report import spread, write_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=Path, required=True, help="A folder of pictures.")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--model", default="builtin:demo-cifar10")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/one_pass.json"))
    args = parser.parse_args(argv)
    console = Console()

    from visionnet.workers.models.classifier import Classifier
    from visionnet.workers.models.embedder import Embedder
    from visionnet.workers.models.loading import resolve_device
    from visionnet.workers.models.one_pass import gives_embedder_vectors

    paths = images_under(args.images)
    paths = paths[:: max(1, len(paths) // args.count)][: args.count]
    decoded = []
    for path in paths:
        with Image.open(path) as img:
            decoded.append(img.convert("RGB"))
    device = resolve_device("auto")
    classifier, embedder = Classifier(args.model, device), Embedder(args.model, device)
    one_pass_ok = gives_embedder_vectors(classifier, embedder)
    batches = [decoded[i : i + args.batch_size] for i in range(0, len(decoded), args.batch_size)]

    def embed_only(batch: list[Any]) -> None:
        embedder.embed(batch)

    def two_passes(batch: list[Any]) -> None:
        embedder.embed(batch)
        classifier.predict(batch, top_k=1)

    def one_pass(batch: list[Any]) -> None:
        classifier.predict_with_features(batch, top_k=1)

    ways: dict[str, Callable[[list[Any]], None]] = {
        "embed only": embed_only,
        "two passes (embed, then classify)": two_passes,
        "one pass (labels and vectors)": one_pass,
    }
    for batch in batches[:2]:  # warm
        for way in ways.values():
            way(batch)
    rates: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(args.repeats):
        for name, way in ways.items():
            started = time.perf_counter()
            for batch in batches:
                way(batch)
            rates[name].append(len(decoded) / (time.perf_counter() - started))

    # The one pass's results against each model's own, on every picture.
    worst_vector_diff, label_mismatches = 0.0, 0
    for batch in batches:
        rows, vectors = classifier.predict_with_features(batch, top_k=1)
        worst_vector_diff = max(
            worst_vector_diff, float(np.abs(vectors - embedder.embed(batch)).max())
        )
        own = classifier.predict(batch, top_k=1)
        label_mismatches += sum(a[0].label != b[0].label for a, b in zip(rows, own, strict=True))

    two = rates["two passes (embed, then classify)"]
    one = rates["one pass (labels and vectors)"]
    report: dict[str, Any] = {
        "command": "python -m bench.one_pass " + " ".join(sys.argv[1:] if argv is None else argv),
        "model": classifier.name,
        "device": device,
        "flip_invariant": classifier.flip_invariant,
        "images": len(decoded),
        "batch_size": args.batch_size,
        "one_pass_accepted": one_pass_ok,
        "img_per_s": {name: spread(r) for name, r in rates.items()},
        "one_pass_over_two_passes_median": float(np.median(one) / np.median(two)),
        "worst_vector_difference": worst_vector_diff,
        "label_mismatches": label_mismatches,
    }
    table = Table(
        title=f"classify while indexing: {len(decoded)} pictures, {classifier.name}, "
        f"batch {args.batch_size}, flip {'on' if classifier.flip_invariant else 'off'}"
    )
    table.add_column("way")
    table.add_column("img/s min", justify="right")
    table.add_column("img/s median", justify="right")
    for name, r in rates.items():
        s = spread(r)
        table.add_row(name, f"{s['min']:.0f}", f"{s['median']:.0f}")
    console.print(table)
    console.print(
        f"one pass accepted by the check: {one_pass_ok}; one pass / two passes (medians): "
        f"{report['one_pass_over_two_passes_median']:.2f}x; largest vector difference "
        f"{worst_vector_diff:.1e}; label mismatches {label_mismatches}"
    )
    write_report(args.out, report, console)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
