"""CPU runtimes and precisions side by side: the model alone, the index job, and quality.

    .venv/bin/python -m bench.cpu_runtime --cifar ../shared/datasets/cifar10-test \\
        --photos ../shared/datasets/imagenet-sample-100 [--quick]

(writes ``bench/results/cpu_runtime.json``). Settings measured (``models.runtime``
/ ``models.precision``): torch/fp32 (the only path before issue 25), torch/bf16,
onnxruntime/fp32, onnxruntime/int8, and what "auto" resolves to on this CPU
(``choice.choose``; its own stack for the demo model, the default path).

1. The model alone, on pictures decoded beforehand (``Embedder.embed``, its
   preprocessing included): one pass at a time on 2 threads, batch 16 (the
   issue's figure), and two one-thread passes at once at the job's batch (32),
   as the bulk worker runs an index chunk: the model's best setting, P1's
   denominator. CLIP ViT-B/32 built from its config (random weights) on
   ``--clip-photos`` full-size photos, and the demo model on CIFAR-10.
2. The index job end to end from JPEG files through a private stack
   (``visionnet up``; bench/stack.py), one stack per model and setting, one after
   another, ``--repeats`` jobs each into a fresh collection: img/s by the
   server's clock, stage seconds, and P1 = job ÷ the model alone's best rate.
3. Quality: the demo model's top-1 on the CIFAR-10 test split through the
   classify API, and kNN precision@10 through the search API (gallery: the last
   timing job's collection); a ViT-B/32 and the CLIP from configs (random
   weights: a weak proxy for trained ones): cosine to fp32 per picture and
   recall@10 of search against fp32's vectors on ``--quality-photos`` CIFAR-10
   pictures (exact search in numpy).

``--demo-files-also N`` indexes N more CIFAR files in each repeat on the same
demo stacks (the order alternating), reported beside the headline job with
their own P1: what the per-job costs (planning, the end's flush) take from a
5,000-file job's P1 that a job of a user's size spreads thinner.

Each timing is repeated ``--repeats`` times (min and median); in part 1 the
settings are interleaved so that drift hits all of them. ``--quick`` is a
small trial run (a few minutes), not a measurement.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console
from rich.table import Table

from bench._cpu_alone import (
    Setting,
    agreement,
    label,
    make_embedder,
    rate,
    runs_on,
    vectors,
)
from bench._cpu_models import build_clip_b32, build_vit_b32
from bench.client import Api
from bench.images import expand_photos, images_under
from bench.quality import accuracy, classify_via_api, knn_precision
from bench.report import spread, write_report
from bench.stack import private_stack, revision, stack_root, wait_until_quiet
from bench.throughput import index_job
from visionnet.training.folder import LabeledFiles, decode_rgb, scan_labeled_folder
from visionnet.workers.models.shipped import SHIPPED_DEMO_DIR

SETTINGS: list[Setting] = [
    ("torch", "fp32"),
    ("torch", "bf16"),
    ("onnxruntime", "fp32"),
    ("onnxruntime", "int8"),
]
BASELINE: Setting = ("torch", "fp32")
AUTO: Setting = ("auto", "auto")
ONE_PASS_BATCH = 16  # the model-alone figure
JOB_BATCH = 32  # models.batch_size's default: what the bulk worker's passes take


class CpuShare:
    """CPU seconds used by processes other than this one and its children, per section.

    The machine is shared; a figure taken while others ran is marked with how
    many cores they took on average.
    """

    def __init__(self) -> None:
        self.me = psutil.Process()

    def _ours(self) -> float:
        total = 0.0
        for proc in [self.me, *self.me.children(recursive=True)]:
            try:
                t = proc.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    def _all(self) -> float:
        t = psutil.cpu_times()
        return float(t.user + t.system + t.nice + getattr(t, "irq", 0) + getattr(t, "softirq", 0))

    def start(self) -> tuple[float, float, float]:
        return time.monotonic(), self._all(), self._ours()

    def others_cores(self, mark: tuple[float, float, float]) -> float:
        """Cores others used on average since ``mark`` (``start()``'s value)."""
        began, all0, ours0 = mark
        wall = max(1e-6, time.monotonic() - began)
        return max(0.0, ((self._all() - all0) - (self._ours() - ours0)) / wall)


def auto_setting() -> tuple[Setting, str]:
    """What "auto" resolves to on this CPU, and the reason a user reads."""
    from visionnet.workers.models.choice import choose, onnx_available
    from visionnet.workers.models.cpu_flags import cpu_flags

    choice = choose(
        device="cpu",
        runtime="auto",
        precision="auto",
        flags=cpu_flags(),
        onnx_available=onnx_available(),
    )
    return (choice.runtime, choice.precision), choice.reason


def stack_env(setting: Setting) -> dict[str, str]:
    """The stack's settings: none for "auto" (the default path)."""
    env = {}
    if setting != AUTO:
        env["VISIONNET_MODELS__RUNTIME"] = setting[0]
        env["VISIONNET_MODELS__PRECISION"] = setting[1]
    return env


# --- part 1: the model alone -------------------------------------------------------------


def model_alone(
    name: str,
    ref: str,
    pictures: list[Any],
    settings: list[Setting],
    onnx_cache: Path,
    repeats: int,
    console: Console,
    share: CpuShare,
) -> dict[str, Any]:
    """Rates per setting, one pass (2 threads) and two passes at once, interleaved."""
    one: dict[str, Any] = {}
    two: dict[str, Any] = {}
    runs: dict[str, dict[str, str]] = {}
    for setting in settings:
        key = label(setting)
        one[key] = make_embedder(ref, setting, onnx_cache, threads=2)
        two[key] = make_embedder(ref, setting, onnx_cache, threads=1)
        runs[key] = runs_on(two[key])
        for embedder in (one[key], two[key]):
            embedder.embed(pictures[:ONE_PASS_BATCH])  # warm
    rates: dict[str, dict[str, list[float]]] = {label(s): {"one": [], "two": []} for s in settings}
    mark = share.start()
    for rep in range(repeats):
        for setting in settings:
            key = label(setting)
            rates[key]["one"].append(rate(one[key], pictures, ONE_PASS_BATCH, passes=1))
            rates[key]["two"].append(rate(two[key], pictures, JOB_BATCH, passes=2))
            console.print(
                f"{name} alone, {key}, round {rep + 1}: one pass {rates[key]['one'][-1]:.1f}, "
                f"two at once {rates[key]['two'][-1]:.1f} img/s"
            )
    others = share.others_cores(mark)
    del one, two
    gc.collect()
    return {
        "pictures": len(pictures),
        "others_cores": round(others, 2),
        "settings": {
            key: {
                **runs[key],
                "one_pass_b16_2threads": spread(r["one"]),
                "two_passes_b32_1thread": spread(r["two"]),
                "best_median": max(statistics.median(r["one"]), statistics.median(r["two"])),
            }
            for key, r in rates.items()
        },
    }


# --- part 3 (in process): vectors against fp32's ------------------------------------------


def vector_quality(
    name: str,
    ref: str,
    pictures: list[Any],
    settings: list[Setting],
    onnx_cache: Path,
    console: Console,
) -> dict[str, Any]:
    """Each setting's vectors of ``pictures`` against torch fp32's (two passes at once)."""
    found: dict[str, Any] = {}
    reference = None
    for setting in [BASELINE, *[s for s in settings if s != BASELINE]]:
        key = label(setting)
        embedder = make_embedder(ref, setting, onnx_cache, threads=1)
        vecs, img_s = vectors(embedder, pictures, JOB_BATCH, passes=2)
        if reference is None:
            reference = vecs
        found[key] = {
            **runs_on(embedder),
            "img_per_s": round(img_s, 1),
            **agreement(reference, vecs),
        }
        console.print(f"{name} vectors, {key}: {found[key]}")
        del embedder
        gc.collect()
    return {"pictures": len(pictures), "settings": found}


# --- part 2: the index job ----------------------------------------------------------------


def job_runs(
    name: str,
    model_dir: Path | None,
    folder: Path,
    roots: list[Path],
    setting: Setting,
    workdir: Path,
    repeats: int,
    console: Console,
    share: CpuShare,
    demo_quality: tuple[LabeledFiles, LabeledFiles, int] | None,
    also: Path | None = None,
) -> dict[str, Any]:
    """``repeats`` index jobs of ``folder`` on a stack of ``setting``; the demo's quality too."""
    key = "auto" if setting == AUTO else label(setting)
    started = time.perf_counter()
    out: dict[str, Any] = {"setting": key}
    with private_stack(workdir, roots, model_dir, extra_env=stack_env(setting)) as base:
        api = Api(base)
        root = stack_root(workdir)
        # The workers load (and export) their models and run a warm-up pass first.
        wait_until_quiet(root, limit_s=300)
        out["ready_s"] = round(time.perf_counter() - started, 1)
        rates: list[float] = []
        stages: list[dict[str, float]] = []
        others: list[float] = []
        also_rates: list[float] = []
        collection = ""
        for rep in range(repeats):
            # With ``also``, its job runs first in odd rounds so order hits both sizes.
            sizes = [(folder, "")] + ([(also, "_also")] if also is not None else [])
            for source, suffix in sizes[::-1] if rep % 2 else sizes:
                wait_until_quiet(root)
                target = f"cpu_{name}_{rep}{suffix}".replace("-", "_")
                mark = share.start()
                img_s, stage_s = index_job(api, source, target)
                if suffix:
                    also_rates.append(img_s)
                    console.print(f"{name} job ({also}), {key}, round {rep + 1}: {img_s:.1f} img/s")
                    continue
                collection = target
                others.append(round(share.others_cores(mark), 2))
                rates.append(img_s)
                stages.append(stage_s)
                console.print(f"{name} job, {key}, round {rep + 1}: {img_s:.1f} img/s")
        # What the workers run, after the jobs made sure that they loaded it.
        out["models"] = api.session.get(base + "/api/v1/models", timeout=30).json()
        out.update(
            files=len(images_under(folder)),
            index_job=spread(rates),
            index_job_runs=rates,
            stage_seconds=stages,
            others_cores=others,
        )
        if also is not None:
            out["also"] = {
                "files": len(images_under(also)),
                "index_job": spread(also_rates),
                "index_job_runs": also_rates,
            }
        if demo_quality is not None:
            labeled, gallery, queries = demo_quality
            wait_until_quiet(root)
            top1 = classify_via_api(api, labeled, 256)
            picked = list(range(0, len(gallery.paths), max(1, len(gallery.paths) // queries)))
            out["quality"] = {
                "images": len(labeled.paths),
                "accuracy_api": accuracy(top1, labeled),
                "knn_queries": len(picked),
                "knn_gallery": len(gallery.paths),
                "knn_precision_at_10": knn_precision(api, gallery, collection, picked),
            }
            out["top1"] = top1
            console.print(f"{name} quality, {key}: {out['quality']}")
    return out


# --- the run ------------------------------------------------------------------------------


def demo_subset(cifar: Path, count: int, out: Path) -> Path:
    """``count`` CIFAR-10 pictures spread over the classes, copied as ``<class>/<file>``."""
    paths = images_under(cifar)
    for path in paths[:: max(1, len(paths) // count)][:count]:
        (out / path.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, out / path.parent.name / path.name)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cifar", type=Path, help="CIFAR-10 test, <class>/ dirs.")
    parser.add_argument("--photos", type=Path, help="Full-size photos to expand.")
    parser.add_argument("--clip-photos", type=int, default=600, help="Photos in the CLIP job.")
    parser.add_argument("--alone-photos", type=int, default=160, help="Photos, CLIP alone.")
    parser.add_argument("--demo-files", type=int, default=5000, help="CIFAR files, demo job.")
    parser.add_argument(
        "--demo-files-also", type=int, default=0, help="More CIFAR files, a 2nd demo job."
    )
    parser.add_argument("--demo-alone", type=int, default=2000, help="CIFAR pictures, demo alone.")
    parser.add_argument("--quality-photos", type=int, default=2000, help="ViT/CLIP vectors.")
    parser.add_argument("--knn-queries", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--parts", default="alone,vectors,jobs", help="Which parts to run.")
    parser.add_argument("--models", default="clip,demo", help="Which models' jobs to run.")
    parser.add_argument(
        "--settings",
        default=",".join(label(s) for s in SETTINGS),
        help="runtime/precision pairs, torch/fp32 first (the reference).",
    )
    parser.add_argument("--quick", action="store_true", help="A small trial run.")
    parser.add_argument("--out", type=Path, default=Path("bench/results/cpu_runtime.json"))
    parser.add_argument("--tables", type=Path, help="Print the tables of a written report.")
    args = parser.parse_args(argv)
    if args.tables:
        print_tables(json.loads(args.tables.read_text()), Console(width=200))
        return 0
    if args.cifar is None or args.photos is None:
        parser.error("--cifar and --photos are required")
    if args.quick:
        args.clip_photos, args.alone_photos, args.demo_files = 96, 32, 1000
        args.demo_alone, args.quality_photos, args.knn_queries = 256, 200, 100
        args.repeats = 1
        if args.out == parser.get_default("out"):
            args.out = Path("bench/results/cpu_runtime-quick.json")
    parts = set(args.parts.split(","))
    settings: list[Setting] = [
        (r, p) for r, _, p in (item.partition("/") for item in args.settings.split(","))
    ]
    if settings[0] != BASELINE:
        parser.error(f"--settings must start with {label(BASELINE)}, the reference")
    models = set(args.models.split(","))
    console = Console(width=200)
    share = CpuShare()
    for noisy in ("transformers", "huggingface_hub", "root"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]

    t0 = time.perf_counter()
    auto, auto_reason = auto_setting()
    console.print(f'"auto" resolves to {label(auto)} here: {auto_reason}')
    report: dict[str, Any] = {
        "command": "python -m bench.cpu_runtime "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "revision": revision(),
        "auto": {"resolves_to": label(auto), "reason": auto_reason},
        "settings": [label(s) for s in settings],
        "counts": {
            "clip_job_photos": args.clip_photos,
            "clip_alone_photos": args.alone_photos,
            "demo_job_files": args.demo_files,
            "demo_job_files_also": args.demo_files_also,
            "demo_alone_pictures": args.demo_alone,
            "quality_pictures": args.quality_photos,
            "knn_queries": args.knn_queries,
            "repeats": args.repeats,
        },
        "cpu_threads": 2,
        "quick": args.quick,
    }
    with tempfile.TemporaryDirectory(prefix="visionnet-cpurt-") as tmp_name:
        tmp = Path(tmp_name)
        onnx_cache = tmp / "onnx"
        clip_dir = build_clip_b32(tmp / "clip-b32")
        photos = expand_photos(images_under(args.photos), args.clip_photos, tmp / "photos")
        demo_dir = demo_subset(args.cifar.resolve(), args.demo_files, tmp / "cifar")
        demo_ref = str(SHIPPED_DEMO_DIR)
        also_dir = (
            demo_subset(args.cifar.resolve(), args.demo_files_also, tmp / "cifar-also")
            if args.demo_files_also > 0
            else None
        )

        if "alone" in parts:
            clip_pictures = decode_rgb(images_under(photos)[: args.alone_photos])
            cifar_paths = images_under(args.cifar)
            cifar_pictures = decode_rgb(
                cifar_paths[:: max(1, len(cifar_paths) // args.demo_alone)][: args.demo_alone]
            )
            report["alone"] = {
                "clip-b32": model_alone(
                    "clip-b32", str(clip_dir), clip_pictures, settings, onnx_cache,
                    args.repeats, console, share,
                ),
                "demo": model_alone(
                    "demo", demo_ref, cifar_pictures, settings, onnx_cache,
                    args.repeats, console, share,
                ),
            }  # fmt: skip
            del clip_pictures, cifar_pictures
            checkpoint(args.out, report)

        if "vectors" in parts:
            vit_dir = build_vit_b32(tmp / "vit-b32")
            cifar_paths = images_under(args.cifar)
            step = max(1, len(cifar_paths) // args.quality_photos)
            quality_pictures = decode_rgb(cifar_paths[::step][: args.quality_photos])
            report["vectors"] = {
                name: vector_quality(
                    name, str(ref), quality_pictures, settings, onnx_cache, console
                )
                for name, ref in (("vit-b32", vit_dir), ("clip-b32", clip_dir))
            }
            del quality_pictures
            checkpoint(args.out, report)

        if "jobs" in parts:
            labeled = scan_labeled_folder(args.cifar.resolve())
            gallery = scan_labeled_folder(demo_dir)
            roots = [photos, demo_dir, args.cifar.resolve(), *([also_dir] if also_dir else [])]
            jobs: dict[str, list[dict[str, Any]]] = {}
            plan: list[tuple[str, Path | None, Path, list[Setting]]] = []
            if "clip" in models:
                plan.append(("clip-b32", clip_dir, photos, settings))
            if "demo" in models:
                plan.append(("demo", None, demo_dir, [*settings, AUTO]))
            for name, model_dir, folder, stack_settings in plan:
                jobs[name] = []
                for n, setting in enumerate(stack_settings):
                    quality = (labeled, gallery, args.knn_queries) if name == "demo" else None
                    jobs[name].append(
                        job_runs(
                            name, model_dir, folder, roots, setting, tmp / f"stack-{name}-{n}",
                            args.repeats, console, share, quality,
                            also_dir if name == "demo" else None,
                        )
                    )  # fmt: skip
                    report["jobs"] = jobs
                    checkpoint(args.out, report)
            top1_agreement(jobs.get("demo", []))
    summarize(report, auto)
    report["total_s"] = round(time.perf_counter() - t0, 1)
    print_tables(report, console)
    write_report(args.out, without_top1(report), console)
    args.out.with_suffix(".partial.json").unlink(missing_ok=True)
    return 0


def without_top1(report: dict[str, Any]) -> dict[str, Any]:
    """The report without each demo run's 10,000 per-file labels (kept only to compare)."""
    jobs = {
        name: [{k: v for k, v in run.items() if k != "top1"} for run in runs]
        for name, runs in report.get("jobs", {}).items()
    }
    return {**report, "jobs": jobs} if jobs else report


def checkpoint(out: Path, report: dict[str, Any]) -> None:
    """What is measured so far, beside the final file: a long run that dies keeps it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".partial.json").write_text(json.dumps(without_top1(report), indent=2))


def top1_agreement(runs: list[dict[str, Any]]) -> None:
    """Per demo setting: how many pictures' top-1 label differs from torch fp32's."""
    base = next((r for r in runs if r["setting"] == label(BASELINE) and "top1" in r), None)
    if base is None:
        return
    for run in runs:
        if "top1" in run:
            changed = sum(run["top1"].get(k) != v for k, v in base["top1"].items())
            run["quality"]["top1_changed_vs_fp32"] = changed


def summarize(report: dict[str, Any], auto: Setting) -> None:
    """P1 per model and setting, the CLIP job against today's, and the goals' verdicts."""
    alone = report.get("alone", {})
    jobs = report.get("jobs", {})
    for name, runs in jobs.items():
        for run in runs:
            # auto: what its models run after the load-time gate (fp32 where it fell back).
            key = (_models_runs(run) or label(auto)) if run["setting"] == "auto" else run["setting"]
            best = alone.get(name, {}).get("settings", {}).get(key, {}).get("best_median")
            if best:
                run["p1"] = run["index_job"]["median"] / best
                if "also" in run:
                    run["also"]["p1"] = run["also"]["index_job"]["median"] / best
    goals: dict[str, Any] = {}

    def job_median(name: str, key: str) -> float | None:
        for run in jobs.get(name, []):
            if run["setting"] == key:
                return float(run["index_job"]["median"])
        return None

    today = job_median("clip-b32", label(BASELINE))
    if today:
        goals["clip_job_vs_today"] = {
            key: (job_median("clip-b32", key) or 0.0) / today for key in report["settings"]
        }
    demo_today, demo_auto = job_median("demo", label(BASELINE)), job_median("demo", "auto")
    if demo_today and demo_auto:
        goals["demo_default_vs_today"] = demo_auto / demo_today
    demo_runs = {r["setting"]: r for r in jobs.get("demo", []) if "quality" in r}
    if label(BASELINE) in demo_runs:
        base_acc = demo_runs[label(BASELINE)]["quality"]["accuracy_api"]
        goals["demo_accuracy_points_vs_fp32"] = {
            key: 100 * (r["quality"]["accuracy_api"] - base_acc) for key, r in demo_runs.items()
        }
    goals["p1"] = {
        f"{name} {run['setting']}": run["p1"] for name, runs in jobs.items() for run in runs
        if "p1" in run
    }  # fmt: skip
    also = {
        f"{name} {run['setting']} ({run['also']['files']} files)": run["also"]["p1"]
        for name, runs in jobs.items() for run in runs if "p1" in run.get("also", {})
    }  # fmt: skip
    if also:
        goals["p1_also"] = also
    report["goals"] = goals


def _fmt(s: dict[str, float] | None, digits: int = 1) -> str:
    return f"{s['min']:.{digits}f} / {s['median']:.{digits}f}" if s else "—"


def print_tables(report: dict[str, Any], console: Console) -> None:
    alone, jobs, vecs = report.get("alone", {}), report.get("jobs", {}), report.get("vectors", {})
    auto_key = report["auto"]["resolves_to"]
    repeats = report["counts"]["repeats"]
    for name in ("clip-b32", "demo"):
        if name not in alone and name not in jobs:
            continue
        table = Table(title=f"{name}: img/s, min / median of {repeats}")
        for col in (
            "setting",
            "runs on",
            "alone: 1 pass, b16, 2 thr",
            "alone: 2 passes, b32",
            "index job",
            "P1",
            "job ÷ torch/fp32 job",
        ):
            table.add_column(col, justify="right", no_wrap=True)  # fmt: skip
        runs = {r["setting"]: r for r in jobs.get(name, [])}
        base_job = runs.get(label(BASELINE), {}).get("index_job", {}).get("median")
        for key in _keys(report, runs):
            run = runs.get(key, {})
            ran = (_models_runs(run) or auto_key) if key == "auto" else key
            a = alone.get(name, {}).get("settings", {}).get(ran, {})
            job = run.get("index_job")
            table.add_row(
                key if key != "auto" else f"auto (= {auto_key})",
                _models_runs(run) or a.get("runs", ""),
                _fmt(a.get("one_pass_b16_2threads")),
                _fmt(a.get("two_passes_b32_1thread")),
                _fmt(job),
                f"{run['p1']:.2f}" if "p1" in run else "—",
                f"{job['median'] / base_job:.2f}x" if job and base_job else "—",
            )
        console.print(table)
        also = [(key, r["also"]) for key, r in runs.items() if "also" in r]
        if also:
            sizes = Table(title=f"{name}: index job img/s by its size, min / median")
            for col in ("setting", "files", "index job", "P1", "files", "index job", "P1"):
                sizes.add_column(col, justify="right", no_wrap=True)
            for key, extra in also:
                run = runs[key]
                sizes.add_row(
                    key, str(run.get("files", "")), _fmt(run.get("index_job")),
                    f"{run['p1']:.2f}" if "p1" in run else "—",
                    str(extra["files"]), _fmt(extra["index_job"]),
                    f"{extra['p1']:.2f}" if "p1" in extra else "—",
                )  # fmt: skip
            console.print(sizes)
    table = Table(title="quality against torch fp32")
    for col in (
        "setting",
        "ViT cos min / mean",
        "ViT recall@10 own / mixed",
        "CLIP cos min / mean",
        "CLIP recall@10 own / mixed",
        "demo top-1 (API)",
        "Δ points",
        "top-1 changed",
        "demo kNN p@10",
    ):
        table.add_column(col, justify="right", no_wrap=True)  # fmt: skip
    demo = {r["setting"]: r.get("quality", {}) for r in jobs.get("demo", [])}
    base_acc = demo.get(label(BASELINE), {}).get("accuracy_api")
    for key in _keys(report, demo):
        row = [key if key != "auto" else f"auto (= {auto_key})"]
        for model in ("vit-b32", "clip-b32"):
            v = vecs.get(model, {}).get("settings", {}).get(auto_key if key == "auto" else key)
            row += [
                f"{v['cosine_min']:.5f} / {v['cosine_mean']:.5f}" if v else "",
                f"{v['recall_at_10_own']:.4f} / {v['recall_at_10_mixed']:.4f}" if v else "",
            ]
        q = demo.get(key, {})
        row += [
            f"{100 * q['accuracy_api']:.2f}%" if q else "",
            f"{100 * (q['accuracy_api'] - base_acc):+.2f}" if q and base_acc is not None else "",
            str(q.get("top1_changed_vs_fp32", "")),
            f"{q['knn_precision_at_10']:.4f}" if q else "",
        ]
        table.add_row(*row)
    console.print(table)
    console.print(f"goals: {report.get('goals')}")
    console.print(f'"auto" here: {report["auto"]}')


def _keys(report: dict[str, Any], runs: dict[str, Any]) -> list[str]:
    return list(report["settings"]) + (["auto"] if "auto" in runs else [])


def _models_runs(run: dict[str, Any]) -> str:
    embedder = (run.get("models") or {}).get("embedder") or {}
    runtime, precision = embedder.get("runtime"), embedder.get("precision")
    return f"{runtime}/{precision}" if runtime else ""


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
