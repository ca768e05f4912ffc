"""The GPU check: the figures no machine here could measure, in one run of at most 8 minutes.

Run it once on a host with an NVIDIA GPU, from the repository root::

    bash scripts/gpu_check_prepare.sh          # beforehand, with the registry: fills .gpu_check/
    python3 -m bench.gpu_check                 # on the GPU host: prints the table, writes JSON

On this workplace's device machine (no network; python3 there holds torch,
transformers, torchvision and pillow), the device tool's `run` takes:

    command: PYTHONUNBUFFERED=1 python3 -m bench.gpu_check 2>&1 | tee $OUT/gpu_check.log
    carry:   [".gpu_check"]
    timeout_s: 480

(the JSON goes to $OUT/gpu_check.json; the partial JSON of a killed run comes back too).

It needs nothing beyond those packages but ``pillow_heif`` (the reader registers it),
which it installs offline from ``.gpu_check/wheels`` (``--wheels``); without the
wheel a stand-in is used and the JSON says so (the check reads JPEGs only). No
Redis, Milvus or Celery: the model-side figures come from the worker's own
reader (chunk_reader.py), mapper (chunk_mapper.py) and model classes.

Parts, in order, each skipped with "skipped: out of time" when the deadline
(``--deadline-s``) leaves too little, the JSON rewritten after each:

* ``model_alone``: ViT-B/16 from ``ViTConfig()`` (random weights), bf16, SDPA,
  loaded by the worker's Embedder; forward passes on device tensors at batch 64
  and 256, after warm-up, min and median of 3.
* ``pipeline``: an index chunk's reader and mapper, exactly as ``embed_chunk``
  drives them, over distinct copies of real full-size JPEGs (ImageNet photos):
  the worker's defaults, then more reader threads, then deeper decode-ahead.
* ``decode``: the reader's CPU decode and resize on 1..16 threads against
  batched ``torchvision.io.decode_jpeg(device="cuda")``.
* ``train_demo``: ``visionnet train-demo``'s training (muon, 8 epochs) on CUDA
  on CIFAR-10, its accuracy on the test split through the service's Classifier,
  and the shipped demo model's on the same files (``bench/quality.py --compare``
  itself needs the whole stack and is not run here).

``--dry-run``: a tiny ViT on the CPU over the given images, for the test suite.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.gpu_parts import (
    CORES,
    DRY,
    FULL,
    Deadline,
    OutOfTimeError,
    Sizes,
    build_vit,
    part_decode,
    part_model_alone,
    part_pipeline,
    part_train_demo,
)

GOALS = {"end_to_end_img_s": 5000.0, "end_to_end_stretch_img_s": 10000.0, "demo_accuracy": 0.93}
ROOT = Path(__file__).resolve().parent.parent
# What scripts/gpu_check_prepare.sh fills (wheels/, datasets/); ignored by git.
CARRY = ROOT / ".gpu_check"


@dataclass
class Report:
    """The JSON, rewritten whole after each part so a killed run leaves what it measured."""

    path: Path | None
    data: dict[str, Any]

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2) + "\n")
        tmp.replace(self.path)


# ---------------------------------------------------------------- environment


def ensure_heif(wheels: Path) -> str:
    """pillow_heif, which the reader imports: installed, from the offline wheels, or a
    stand-in that registers nothing (JPEGs only, said in the JSON)."""
    if importable("pillow_heif"):
        return "installed"
    why = f"no pillow_heif wheel in {wheels}"
    if any(wheels.glob("pillow_heif-*.whl")):
        target = Path(tempfile.gettempdir()) / "gpu_check_site"
        pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps"]
        pip += ["--no-compile", "--target", str(target), "--find-links", str(wheels)]
        done = subprocess.run([*pip, "pillow_heif"], check=False)
        sys.path.insert(0, str(target))
        importlib.invalidate_caches()
        if done.returncode == 0 and importable("pillow_heif"):
            return f"installed from {wheels}"
        why = f"the wheel in {wheels} did not install or import"
    stub = types.ModuleType("pillow_heif")
    stub.register_heif_opener = lambda: None  # type: ignore[attr-defined]
    sys.modules["pillow_heif"] = stub
    return f"stand-in ({why}): HEIC not read; this check reads JPEGs only"


def importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def environment(device: str, heif: str) -> dict[str, Any]:
    import PIL
    import torch
    import transformers

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": CORES,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "pillow": PIL.__version__,
        "pillow_heif": heif,
        "device": device,
        "torch_threads": torch.get_num_threads(),
    }
    try:
        import torchvision

        env["torchvision"] = torchvision.__version__
    except ImportError:
        env["torchvision"] = None
    if device.startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
        )
        env["commit"] = commit.stdout.strip() if commit.returncode == 0 else None
    except OSError:
        env["commit"] = None  # no git on the host
    return env


# ---------------------------------------------------------------- data


def find_dataset(given: Path | None, *names: str) -> Path | None:
    """``given``, else the first of ``names`` under .gpu_check/datasets, shared/datasets
    (a checkout's own) or ../shared/datasets (beside a checkout)."""
    if given is not None:
        return given
    for base in (CARRY / "datasets", ROOT / "shared/datasets", ROOT.parent / "shared/datasets"):
        for name in names:
            if (base / name).exists():
                return base / name
    return None


def folder_of(path: Path, scratch: Path) -> Path:
    """A folder as it is; a .tar.gz unpacked into ``scratch``, down to where it branches
    (cifar10-train.tar.gz holds train/<class>/...)."""
    if path.is_dir():
        return path
    out = scratch / path.name.split(".")[0]
    with tarfile.open(path) as tar:
        tar.extractall(out, filter="data")
    while len(entries := list(out.iterdir())) == 1 and entries[0].is_dir():
        out = entries[0]
    return out


# ---------------------------------------------------------------- running


def run_part(
    report: Report, name: str, need_s: float, deadline: Deadline, measure: Callable[[], Any]
) -> None:
    """One part: skipped when the deadline leaves less than ``need_s``, its exception
    recorded as its error; the JSON saved either way."""
    left = deadline.left()
    print(f"== {name} ({left:.0f} s left)", flush=True)
    result: dict[str, Any]
    if left < need_s:
        result = {"skipped": f"out of time ({left:.0f} s left, needs about {need_s:.0f} s)"}
    else:
        start = time.perf_counter()
        try:
            result = measure()
        except OutOfTimeError:
            result = {"skipped": "out of time"}
        except MissingInputError as exc:
            result = {"skipped": str(exc)}
        except Exception as exc:
            result = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        result["part_s"] = round(time.perf_counter() - start, 2)
    report.data["parts"][name] = result
    report.save()
    print(json.dumps(result, indent=1, default=str)[:4000], flush=True)


class LazyModel:
    """The ViT, built by the first part that needs it (its seconds counted there)."""

    def __init__(self, sizes: Sizes, device: str, where: Path) -> None:
        self.sizes, self.device, self.where = sizes, device, where
        self.model: Any = None

    def __call__(self) -> Any:
        if self.model is None:
            self.model = build_vit(self.sizes.vit, self.device, self.where)
        return self.model

    def release(self) -> None:
        """The ViT's device memory back, before training."""
        import gc

        import torch

        self.model = None
        gc.collect()
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()


class MissingInputError(Exception):
    """A data set the part reads was neither given nor found (the part is skipped)."""


def given(path: Path | None, flag: str) -> Path:
    if path is None or not path.exists():
        where = "not found" if path is None else f"{path} does not exist"
        raise MissingInputError(f"{where}: pass {flag} (see scripts/gpu_check_prepare.sh)")
    return path


def check(args: argparse.Namespace, report: Report, deadline: Deadline) -> None:
    """Every part in turn, within the deadline."""
    sizes = DRY if args.dry_run else FULL
    device = report.data["env"]["device"]
    images = find_dataset(args.images, "imagenet-sample-100")
    train = find_dataset(args.cifar_train, "cifar10-train", "cifar10-train.tar.gz")
    test = find_dataset(args.cifar_test, "cifar10-test", "cifar10-test.tar.gz")
    side = sizes.vit.get("image_size", 224)
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        scratch = Path(tmp)
        model = LazyModel(sizes, device, scratch / "vit")

        def pipeline() -> dict[str, Any]:
            return part_pipeline(model(), given(images, "--images"), scratch, sizes, deadline)

        def train_demo() -> dict[str, Any]:
            model.release()
            train_dir = folder_of(given(train, "--cifar-train"), scratch)
            test_dir = folder_of(given(test, "--cifar-test"), scratch)
            return part_train_demo(train_dir, test_dir, scratch, device, sizes, deadline)

        parts: dict[str, Callable[[], dict[str, Any]]] = {
            "model_alone": lambda: part_model_alone(model(), sizes, deadline),
            "pipeline": pipeline,
            "decode": lambda: part_decode(given(images, "--images"), side, device, sizes, deadline),
            "train_demo": train_demo,
        }
        for name, measure in parts.items():
            run_part(report, name, sizes.need_s[name], deadline, measure)


# ---------------------------------------------------------------- the table


def rate(entry: dict[str, Any]) -> str:
    if "skipped" in entry or "error" in entry:
        return entry.get("skipped") or f"error: {entry['error']}"
    return f"{entry['img_s_median']:,.0f} img/s (best {entry['img_s_best']:,.0f})"


def table(data: dict[str, Any]) -> str:
    """The Markdown table that bench/RESULTS.md takes: each figure against its goal."""
    env, parts = data["env"], data["parts"]
    goal = GOALS["end_to_end_img_s"]
    stretch = GOALS["end_to_end_stretch_img_s"]
    rows: list[tuple[str, str, str]] = []

    def add(figure: str, entry: dict[str, Any], target: str = "", met: float | None = None) -> None:
        value = rate(entry)
        if met is not None and "img_s_median" in entry:
            value += " — " + ("met" if entry["img_s_median"] >= met else "below")
        rows.append((figure, value, target))

    def failed(name: str, part: dict[str, Any]) -> bool:
        if "skipped" in part or "error" in part:
            rows.append((name, rate(part), ""))
            return True
        return False

    alone = parts.get("model_alone", {})
    if not failed("model alone", alone):
        for batch, entry in alone["batches"].items():
            what = f"{alone['model']} {alone['dtype']} {alone['attention']}"
            add(f"model alone, {what}, batch {batch}", entry)
    pipe = parts.get("pipeline", {})
    if not failed("index pipeline (reader + mapper)", pipe):
        for entry in pipe["variants"]:
            add(
                f"index pipeline, real JPEGs, batch {pipe['batch_size']}, {entry['variant']}",
                entry,
                f">= {goal:,.0f} (stretch {stretch:,.0f})",
                goal,
            )
    dec = parts.get("decode", {})
    if not failed("decode", dec):
        for threads, entry in dec["cpu_threads"].items():
            add(f"CPU decode + resize to {dec['side']}, threads: {threads}", entry)
        gpu = dec["gpu"]
        if not failed("GPU decode (torchvision decode_jpeg)", gpu):
            for key, entry in gpu.items():
                if isinstance(entry, dict):
                    add(f"GPU decode_jpeg, {key}", entry)
    demo = parts.get("train_demo", {})
    if not failed("demo model (train-demo)", demo):
        acc = demo["eval_accuracy"]
        met = "met" if acc >= GOALS["demo_accuracy"] else "below"
        rows.append(
            (
                f"demo model, train-demo {demo['epochs_run']} epochs on {env['device']}, "
                f"{demo['eval_images']} test images",
                f"{acc:.2%} — {met} ({demo['timings'].get('total_s', '?')} s)",
                f">= {GOALS['demo_accuracy']:.0%}",
            )
        )
        shipped = demo["shipped_model"]
        value = shipped.get("skipped") or f"{shipped['eval_accuracy']:.2%}"
        rows.append(("shipped demo model, same files", value, ""))
    machine = env.get("gpu") or f"{env['cpus']} CPUs"
    lines = [
        f"GPU check {data['date']}, {machine}, torch {env['torch']}, commit {env.get('commit')}"
        + (" (DRY RUN: tiny model, CPU)" if data["dry_run"] else ""),
        "",
        "| figure | measured (median of 3) | goal |",
        "| --- | --- | --- |",
        *(f"| {a} | {b} | {c} |" for a, b, c in rows),
        "",
        f"command: {data['command']}",
    ]
    return "\n".join(lines)


def default_out() -> Path:
    where = os.environ.get("OUT")
    return Path(where) / "gpu_check.json" if where else ROOT / "bench/out/gpu_check.json"


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.gpu_check",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--images",
        type=Path,
        help="folder of full-size JPEGs "
        "[default: imagenet-sample-100 under .gpu_check/datasets or ../shared/datasets]",
    )
    parser.add_argument(
        "--cifar-train",
        type=Path,
        help="CIFAR-10 training split: <class>/<image> folder or cifar10-train.tar.gz",
    )
    parser.add_argument("--cifar-test", type=Path, help="CIFAR-10 test split: folder or .tar.gz")
    parser.add_argument(
        "--wheels",
        type=Path,
        default=CARRY / "wheels",
        help="offline wheels for what the host lacks [default: .gpu_check/wheels]",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON file [default: $OUT/gpu_check.json, else bench/out/gpu_check.json]",
    )
    parser.add_argument(
        "--deadline-s",
        type=float,
        default=420.0,
        help="the whole run's limit; parts that would pass it are skipped",
    )
    parser.add_argument("--device", help="[default: cuda; cpu with --dry-run]")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="a tiny ViT and a tiny training run, on the CPU, in seconds",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    deadline = Deadline(args.deadline_s)
    started = time.time()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local files only, never the hub
    heif = ensure_heif(args.wheels)
    device = args.device or ("cpu" if args.dry_run else "cuda")
    report = Report(
        args.out or default_out(),
        {
            "date": time.strftime("%Y-%m-%d", time.gmtime(started)),
            "command": "python -m bench.gpu_check "
            + " ".join(sys.argv[1:] if argv is None else argv),
            "dry_run": args.dry_run,
            "deadline_s": args.deadline_s,
            "goals": GOALS,
            "env": {"device": device},
            "parts": {},
        },
    )
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    if args.dry_run:
        # One thread: on a small shared CPU two threads wait on each other (a tiny
        # pass took 0.15 s on 2 busy cores against 1 ms on one).
        torch.set_num_threads(1)
    if device.startswith("cuda") and not torch.cuda.is_available():
        report.data["error"] = "no CUDA device: run on a GPU host, or with --dry-run"
        report.save()
        print(report.data["error"], file=sys.stderr)
        return 2
    report.data["env"] = environment(device, heif)
    report.save()
    check(args, report, deadline)
    report.data["elapsed_s"] = round(time.time() - started, 1)
    report.save()
    print()
    print(table(report.data))
    print(f"\nwrote {report.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
