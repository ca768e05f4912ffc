"""Retrieval and classification quality of the running service, measured through its API.

    python -m bench.quality --cifar-dir DIR --neardup-dir DIR [--model DIR] [--out FILE]

Starts a private stack (``visionnet up``) on the demo profile, or on ``--model``,
and measures:

* classification accuracy through the API on a labeled ``<class>/<image>``
  folder, and by calling the same model directly on the same files: the two
  must agree, or the service preprocesses differently (exit status 1);
* kNN precision@10 through the search API: the share of an indexed image's ten
  nearest neighbours (itself excluded) that have its class;
* near-duplicate recall@1: index originals, query with resized, recompressed,
  90%-cropped and flipped copies, count how often the original comes first;
  on ``--neardup-dir`` (gallery: its own images) and on a sample of the labeled
  folder (gallery: the whole labeled folder);
* images/s of the embedder called directly on decoded images, with and without
  the flip-invariance option (``models.flip_invariant``), min and median of 3.

``--compare DIR`` measures another model (e.g. the previous demo model) on its
own stack in the same run, side by side. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image
from rich.console import Console
from rich.table import Table

from bench.client import Api, in_parallel
from bench.neardup import TRANSFORMS, encode_jpeg
from bench.report import write_report
from bench.stack import private_stack
from visionnet.training.folder import LabeledFiles, scan_labeled_folder
from visionnet.workers.models.shipped import SHIPPED_DEMO_DIR

AGREEMENT_TOLERANCE = 0.001  # API and direct accuracy may differ by at most 0.1 points


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def classify_via_api(api: Api, files: LabeledFiles, per_job: int) -> dict[str, str]:
    paths = [str(p.resolve()) for p in files.paths]
    batches = [paths[i : i + per_job] for i in range(0, len(paths), per_job)]

    def one(batch: list[str]) -> list[dict[str, Any]]:
        images: list[dict[str, Any]] = api.run("classify", json={"paths": batch, "top_k": 1})[
            "images"
        ]
        return images

    top1: dict[str, str] = {}
    for images in in_parallel(one, batches, workers=4):
        for item in images:
            top1[item["name"]] = item["predictions"][0]["label"] if item.get("predictions") else ""
    return top1


def classify_directly(model_ref: str, files: LabeledFiles, batch: int) -> dict[str, str]:
    from visionnet.workers.models.classifier import Classifier
    from visionnet.workers.models.loading import resolve_device

    classifier = Classifier(model_ref, resolve_device("auto"))
    predicted: list[str] = []
    for i in range(0, len(files.paths), batch):
        images = []
        for path in files.paths[i : i + batch]:
            with Image.open(path) as img:
                images.append(img.convert("RGB"))
        predicted.extend(classifier.top1(images))
    return {str(p.resolve()): label for p, label in zip(files.paths, predicted, strict=True)}


def accuracy(top1: dict[str, str], files: LabeledFiles) -> float:
    hits = sum(
        top1.get(str(p.resolve())) == files.labels[t]
        for p, t in zip(files.paths, files.targets, strict=True)
    )
    return hits / len(files.paths)


def index(api: Api, folder: Path, collection: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    result = api.run(
        "index", json={"source": {"path": str(folder.resolve())}, "collection": collection}
    )
    result["seconds"] = round(time.perf_counter() - t0, 2)
    return result


def knn_precision(
    api: Api, files: LabeledFiles, collection: str, queries: list[int], k: int = 10
) -> float:
    def one(i: int) -> float:
        own = sha256(files.paths[i])
        hits = api.run("search", json={"image_id": own, "k": k + 1, "collection": collection})[
            "hits"
        ]
        neighbours = [h for h in hits if h["id"] != own][:k]
        label = files.labels[files.targets[i]]
        return sum(Path(h["path"]).parent.name == label for h in neighbours) / k

    scores: list[float] = in_parallel(one, queries)
    return sum(scores) / len(scores)


def neardup_recall(api: Api, originals: list[Path], collection: str) -> dict[str, float]:
    """Recall@1 per transform, and over all copies."""
    ids = {path: sha256(path) for path in originals}
    jobs = [(path, name) for path in originals for name in TRANSFORMS]

    def one(job: tuple[Path, str]) -> bool:
        path, name = job
        with Image.open(path) as img:
            copy = TRANSFORMS[name](img.convert("RGB"))
        files = {"image": (f"{path.stem}-{name}.jpg", encode_jpeg(copy), "image/jpeg")}
        hits = api.run("search", files=files, data={"k": "1", "collection": collection})["hits"]
        return bool(hits) and hits[0]["id"] == ids[path]

    found = in_parallel(one, jobs)
    recall = {
        name: sum(f for (_, n), f in zip(jobs, found, strict=True) if n == name) / len(originals)
        for name in TRANSFORMS
    }
    recall["all"] = sum(found) / len(found)
    return recall


def measure(args: argparse.Namespace, api: Api, model_ref: str) -> dict[str, Any]:
    rng = random.Random(args.seed)
    labeled = scan_labeled_folder(args.cifar_dir)
    timings: dict[str, float] = {}
    out: dict[str, Any] = {}

    t0 = time.perf_counter()
    api_top1 = classify_via_api(api, labeled, args.per_job)
    timings["classify_api_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    direct_top1 = classify_directly(model_ref, labeled, args.batch_size)
    timings["classify_direct_s"] = time.perf_counter() - t0
    disagree = sum(api_top1.get(k) != v for k, v in direct_top1.items())
    out["classification"] = {
        "images": len(labeled.paths),
        "accuracy_api": accuracy(api_top1, labeled),
        "accuracy_direct": accuracy(direct_top1, labeled),
        "top1_disagreements": disagree,
    }

    out["index_labeled"] = index(api, args.cifar_dir, "bench_labeled")
    queries = list(range(len(labeled.paths)))
    if 0 < args.knn_queries < len(queries):
        queries = sorted(rng.sample(queries, args.knn_queries))
    t0 = time.perf_counter()
    out["knn"] = {
        "queries": len(queries),
        "gallery": len(labeled.paths),
        "precision_at_10": knn_precision(api, labeled, "bench_labeled", queries),
    }
    timings["knn_s"] = time.perf_counter() - t0

    originals = sorted(p for p in args.neardup_dir.iterdir() if p.is_file())
    out["index_neardup"] = index(api, args.neardup_dir, "bench_neardup")
    t0 = time.perf_counter()
    out["neardup"] = {
        "originals": len(originals),
        "gallery": len(originals),
        "recall_at_1": neardup_recall(api, originals, "bench_neardup"),
    }
    sample = sorted(rng.sample(labeled.paths, min(args.neardup_labeled, len(labeled.paths))))
    out["neardup_labeled"] = {
        "originals": len(sample),
        "gallery": len(labeled.paths),
        "recall_at_1": neardup_recall(api, sample, "bench_labeled"),
    }
    timings["neardup_s"] = time.perf_counter() - t0
    if args.throughput_images > 0:
        out["embedder_throughput"] = embedder_throughput(
            model_ref, labeled, args.throughput_images, args.batch_size
        )
    out["timings"] = {k: round(v, 2) for k, v in timings.items()}
    return out


def embedder_throughput(
    model_ref: str, files: LabeledFiles, images: int, batch: int, repeats: int = 3
) -> dict[str, dict[str, float]]:
    """Images/s of ``Embedder.embed`` on decoded images, flip option off and on, side by side."""
    import statistics

    from visionnet.workers.models.embedder import Embedder
    from visionnet.workers.models.loading import resolve_device
    from visionnet.workers.models.runtime import Runtime

    decoded = []
    for path in files.paths[:: max(1, len(files.paths) // images)][:images]:
        with Image.open(path) as img:
            decoded.append(img.convert("RGB"))
    device = resolve_device("auto")
    embedders = {
        flip: Embedder(model_ref, device, runtime=Runtime(flip_invariant=flip))
        for flip in ("off", "on")
    }
    rates: dict[str, list[float]] = {"off": [], "on": []}
    for _ in range(repeats):
        for flip, embedder in embedders.items():  # interleaved, so drift hits both
            started = time.perf_counter()
            for i in range(0, len(decoded), batch):
                embedder.embed(decoded[i : i + batch])
            rates[flip].append(len(decoded) / (time.perf_counter() - started))
    return {
        f"flip_{flip}": {
            "images": len(decoded),
            "img_per_s_min": round(min(r), 1),
            "img_per_s_median": round(statistics.median(r), 1),
        }
        for flip, r in rates.items()
    }


def flips_by_default(model_dir: Path) -> bool:
    """What ``models.flip_invariant = "auto"`` makes of this model (the stack's setting)."""
    from transformers import AutoConfig

    from visionnet.workers.models.cifarnet import register_auto_classes
    from visionnet.workers.models.runtime import Runtime

    register_auto_classes()
    return Runtime().flips(AutoConfig.from_pretrained(model_dir))


def random_copy(model_dir: Path, out_dir: Path, seed: int = 0) -> Path:
    """The same architecture and processor with untrained weights: the no-training baseline."""
    import shutil

    import torch
    from transformers import AutoConfig, AutoModelForImageClassification

    from visionnet.workers.models.cifarnet import register_auto_classes
    from visionnet.workers.models.info import RANDOM_WEIGHTS_FLAG

    register_auto_classes()
    torch.manual_seed(seed)
    config = AutoConfig.from_pretrained(model_dir)
    setattr(config, RANDOM_WEIGHTS_FLAG, True)
    model = AutoModelForImageClassification.from_config(config)  # type: ignore[no-untyped-call]
    model.eval().save_pretrained(out_dir)
    shutil.copy(model_dir / "preprocessor_config.json", out_dir)
    return out_dir


def print_table(runs: list[dict[str, Any]], console: Console) -> None:
    first = runs[0]
    data, nd_data = first["labeled_dir"], first["neardup_dir"]
    table = Table(title="VisionNet quality, measured through the HTTP API")
    table.add_column("metric")
    table.add_column("data")
    for run in runs:
        table.add_column(run["name"], justify="right")

    def row(metric: str, where: str, get: Any, fmt: str = "{:.4f}") -> None:
        table.add_row(metric, where, *[fmt.format(get(run)) for run in runs])

    c = first["classification"]
    row(
        "accuracy, through the API",
        f"{data} ({c['images']})",
        lambda r: r["classification"]["accuracy_api"],
    )
    row("accuracy, model called directly", data, lambda r: r["classification"]["accuracy_direct"])
    row(
        "top-1 disagreements, API vs direct",
        data,
        lambda r: r["classification"]["top1_disagreements"],
        "{}",
    )
    k = first["knn"]
    row(
        "kNN precision@10 (search API)",
        f"{data} ({k['queries']} queries, gallery {k['gallery']})",
        lambda r: r["knn"]["precision_at_10"],
    )
    for key, name in (("neardup", nd_data), ("neardup_labeled", data)):
        nd = first[key]
        for transform in nd["recall_at_1"]:
            row(
                f"near-dup recall@1, {transform}",
                f"{name} ({nd['originals']} originals, gallery {nd['gallery']})",
                lambda r, key=key, transform=transform: r[key]["recall_at_1"][transform],
            )
    if "embedder_throughput" in first:
        for flip in ("off", "on"):
            t = first["embedder_throughput"][f"flip_{flip}"]
            row(
                f"embedder img/s, flip option {flip} (min / median of 3)",
                f"{data} ({t['images']} decoded, batch {first['batch_size']})",
                lambda r, flip=flip: r["embedder_throughput"][f"flip_{flip}"],
                "{0[img_per_s_min]:.0f} / {0[img_per_s_median]:.0f}",
            )
    row("flip-invariant in the service (auto)", "", lambda r: r["flip_invariant"], "{}")
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cifar-dir", type=Path, required=True, help="Labeled <class>/ folder.")
    parser.add_argument("--neardup-dir", type=Path, required=True, help="Folder of originals.")
    parser.add_argument("--model", type=Path, help="Model directory (default: the demo model).")
    parser.add_argument(
        "--compare",
        type=Path,
        action="append",
        default=[],
        help="Another model directory to measure side by side (repeatable).",
    )
    parser.add_argument(
        "--throughput-images",
        type=int,
        default=2000,
        help="Decoded images for the embedder's img/s, flip off and on (0: skip).",
    )
    parser.add_argument(
        "--with-random-baseline",
        action="store_true",
        help="Also measure the same model with untrained weights, side by side.",
    )
    parser.add_argument("--knn-queries", type=int, default=1000, help="0: every image.")
    parser.add_argument("--neardup-labeled", type=int, default=200, help="Originals sampled.")
    parser.add_argument("--per-job", type=int, default=256, help="Images per classify job.")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("bench/results/quality.json"))
    args = parser.parse_args(argv)
    console = Console(width=140)
    model_dir = (args.model or SHIPPED_DEMO_DIR).resolve()
    t0 = time.perf_counter()
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="visionnet-bench-") as tmp_name:
        tmp = Path(tmp_name)
        # No --model: the stack runs on the demo profile, as users start it.
        plan: list[tuple[str, Path, Path | None]] = [
            ("shipped demo model" if args.model is None else args.model.name, model_dir, args.model)
        ]
        for other in args.compare:
            plan.append((other.name, other.resolve(), other.resolve()))
        if args.with_random_baseline:
            baseline = random_copy(model_dir, tmp / "random-weights", args.seed)
            plan.append(("random weights", baseline, baseline))
        for name, ref, stack_model in plan:
            workdir = tmp / f"stack-{len(runs)}"
            started = time.perf_counter()
            with private_stack(workdir, [args.cifar_dir, args.neardup_dir], stack_model) as base:
                console.print(f"{name}: stack up at {base} ({time.perf_counter() - started:.1f} s)")
                run: dict[str, Any] = {
                    "name": name,
                    "model": str(ref),
                    "labeled_dir": args.cifar_dir.name,
                    "neardup_dir": args.neardup_dir.name,
                    "batch_size": args.batch_size,
                    "flip_invariant": flips_by_default(ref),
                    **measure(args, Api(base), str(ref)),
                }
            runs.append(run)
    report: dict[str, Any] = {"runs": runs, "total_s": round(time.perf_counter() - t0, 2)}
    training = model_dir / "training.json"
    if training.is_file():
        report["training"] = json.loads(training.read_text())
    print_table(runs, console)
    write_report(args.out, report, console)
    status = 0
    for run in runs:
        c = run["classification"]
        if abs(c["accuracy_api"] - c["accuracy_direct"]) > AGREEMENT_TOLERANCE:
            console.print(
                f"[red]{run['name']}: API and direct accuracy disagree: check preprocessing"
            )
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
