"""The GPU check's measurements (``bench.gpu_check`` runs them): each part takes the
deadline and returns plain figures, or raises ``OutOfTimeError`` before a step
the deadline has no room for.

Every figure runs through the worker's own code: the Embedder loads the model,
the chunk reader and mapper (chunk_reader.py, chunk_mapper.py) run the index
pipeline as ``embed_chunk`` drives them, ``reader.decode_sized`` decodes, and
``training.trainer.train_demo`` trains, as ``visionnet train-demo`` does.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

# The worker's settings this check mirrors (config/settings.py; a test keeps them equal).
WORKER_DEFAULTS = {"chunk_size": 256, "batch_size": 32, "reader_threads": 2}
MAX_FILE_BYTES = 200 * 1024 * 1024  # jobs.max_file_bytes
REPEATS = 3


@dataclass(frozen=True)
class Sizes:
    """How much each part does: the real check, or the dry run's seconds on a CPU."""

    vit: dict[str, Any]
    model_batches: tuple[int, ...]
    model_target_s: float
    pipeline_images: int
    chunk_size: int
    batch_size: int
    # (reader threads, batches decoded ahead; None: the worker's, mapper.lanes)
    pipeline_variants: tuple[tuple[int, int | None], ...]
    decode_threads: tuple[int, ...]
    decode_images_per_thread: int
    gpu_decode_batches: tuple[int, ...]
    gpu_decode_images: int
    recipe: dict[str, Any]  # train-demo's recipe overrides
    curve_images: int  # test images scored after each epoch (train-demo's --curve-images)
    need_s: dict[str, float] = field(default_factory=dict)  # the least each part starts with
    dry: bool = False


CORES = os.cpu_count() or 1
FULL = Sizes(
    vit={},  # ViTConfig()'s defaults: ViT-B/16 at 224
    model_batches=(WORKER_DEFAULTS["batch_size"], 64, 256),
    model_target_s=1.0,
    pipeline_images=3072,
    chunk_size=WORKER_DEFAULTS["chunk_size"],
    batch_size=WORKER_DEFAULTS["batch_size"],
    pipeline_variants=((WORKER_DEFAULTS["reader_threads"], None), (CORES, None), (CORES, CORES)),
    decode_threads=tuple(sorted({1, 4, 8, CORES})),
    decode_images_per_thread=150,
    gpu_decode_batches=(64, 256),
    gpu_decode_images=1024,
    recipe={"epochs": 8},
    curve_images=2000,
    need_s={"model_alone": 40, "pipeline": 60, "decode": 40, "train_demo": 120},
)
DRY = Sizes(
    vit={
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "image_size": 32,
        "patch_size": 8,
    },
    model_batches=(4, 8),
    model_target_s=0.02,
    pipeline_images=24,
    chunk_size=8,
    batch_size=4,
    pipeline_variants=((2, None), (2, 3)),
    decode_threads=(1, 2),
    decode_images_per_thread=4,
    gpu_decode_batches=(4,),
    gpu_decode_images=8,
    recipe={"epochs": 1, "widths": (8, 16, 16), "batch_size": 8, "micro_batch": 8},
    curve_images=0,
    need_s={"model_alone": 1, "pipeline": 1, "decode": 1, "train_demo": 1},
    dry=True,
)


class Deadline:
    """The run's one clock: every part and repeat asks it before starting."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


class OutOfTimeError(Exception):
    """Raised inside a part when the deadline leaves no room for its next step."""


def spread(seconds: list[float], items: int) -> dict[str, Any]:
    """Min and median of repeated timings, and the images/s each gives."""
    low, mid = min(seconds), statistics.median(seconds)
    return {
        "repeats": len(seconds),
        "seconds_min": round(low, 4),
        "seconds_median": round(mid, 4),
        "img_s_best": round(items / low, 1),
        "img_s_median": round(items / mid, 1),
    }


def repeated(run: Callable[[], float], deadline: Deadline, items: int) -> dict[str, Any]:
    """``run()`` (seconds taken) REPEATS times while the deadline allows another of the
    same length; at least one, or OutOfTimeError."""
    seconds: list[float] = []
    for _ in range(REPEATS):
        if seconds and deadline.left() < 1.5 * max(seconds):
            break
        if deadline.left() <= 0:
            break
        seconds.append(run())
    if not seconds:
        raise OutOfTimeError
    out = spread(seconds, items)
    if len(seconds) < REPEATS:
        out["cut"] = "out of time"
    return out


def jpegs(folder: Path) -> list[bytes]:
    suffixes = {".jpg", ".jpeg"}
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in suffixes)
    if not files:
        raise ValueError(f"no JPEG files in {folder}")
    return [p.read_bytes() for p in files]


def distinct_copies(originals: list[bytes], count: int, into: Path) -> list[str]:
    """``count`` files, each an original with its own bytes after the end-of-image
    marker (decoders ignore them), so the reader's content ids keep every one."""
    into.mkdir(parents=True, exist_ok=True)
    paths = []
    for n in range(count):
        path = into / f"{n:06d}.jpg"
        path.write_bytes(originals[n % len(originals)] + n.to_bytes(8, "big"))
        paths.append(str(path))
    return paths


# ---------------------------------------------------------------- model


def build_vit(vit: dict[str, Any], device: str, into: Path) -> Any:
    """A ViT from its config (random weights), saved and loaded by the worker's Embedder."""
    import torch
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    from visionnet.workers.models.embedder import Embedder
    from visionnet.workers.models.info import RANDOM_WEIGHTS_FLAG
    from visionnet.workers.models.runtime import Precision, Runtime

    config: Any = ViTConfig(**vit)
    setattr(config, RANDOM_WEIGHTS_FLAG, True)
    side = int(config.image_size)
    model: Any = ViTModel(config)
    model.to(torch.bfloat16).save_pretrained(into)
    processor: Any = ViTImageProcessor(size={"height": side, "width": side})
    processor.save_pretrained(into)
    precision: Precision = "bf16" if device.startswith("cuda") else "fp32"
    embedder = Embedder(str(into), device, runtime=Runtime(precision=precision))
    # transformers picks SDPA by default where the model has it; asked for explicitly.
    if embedder.model.config._attn_implementation != "sdpa":
        embedder.model.set_attn_implementation("sdpa")
    return embedder


def describe_model(embedder: Any) -> dict[str, Any]:
    config = embedder.model.config
    return {
        "model": "ViT"
        + ("-B/16" if config.hidden_size == 768 else f" (tiny, {config.hidden_size})"),
        "image_size": config.image_size,
        "parameters": sum(p.numel() for p in embedder.model.parameters()),
        "dtype": str(embedder.dtype).removeprefix("torch."),
        "attention": config._attn_implementation,
        "device": embedder.device,
    }


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)


def part_model_alone(embedder: Any, sizes: Sizes, deadline: Deadline) -> dict[str, Any]:
    """Forward passes on tensors already on the device: the ceiling for the pipeline."""
    import torch

    side = embedder.model.config.image_size
    out: dict[str, Any] = {**describe_model(embedder), "batches": {}}
    for batch in sizes.model_batches:
        pixels = torch.randn(batch, 3, side, side, device=embedder.device)
        run = partial(forward_passes, embedder, pixels)
        one = min(run(1) for _ in range(3))  # warm-up, and one pass's length
        times = max(3, math.ceil(sizes.model_target_s / max(one, 1e-6)))
        result = repeated(partial(run, times), deadline, times * batch)
        out["batches"][str(batch)] = {"passes_per_repeat": times, **result}
    return out


def forward_passes(embedder: Any, pixels: Any, times: int) -> float:
    """Seconds for ``times`` forward passes of the worker's model over ``pixels``."""
    import torch

    start = time.perf_counter()
    with torch.inference_mode(), embedder.precision_scope():
        for _ in range(times):
            embedder.forward(pixel_values=pixels)
        synchronize(embedder.device)
    return time.perf_counter() - start


# ---------------------------------------------------------------- pipeline


def run_chunks(
    embedder: Any,
    paths: list[str],
    *,
    root: Path,
    sizes: Sizes,
    threads: int,
    ahead: int | None,
) -> dict[str, float]:
    """Every chunk of ``paths`` through the reader and mapper, as ``embed_chunk`` drives
    them (the store lookup and the sink, which need Redis and Milvus, left out)."""
    from visionnet.workers.model_worker.chunk_mapper import ChunkMapper
    from visionnet.workers.model_worker.chunk_reader import ChunkReader
    from visionnet.workers.models.runtime import bulk_passes

    lanes = bulk_passes(0, embedder.device, CORES)
    totals = dict.fromkeys(("read", "decode_wait", "decode", "preprocess", "embed"), 0.0)
    embedded = errors = 0
    start = time.perf_counter()
    with (
        ThreadPoolExecutor(threads, thread_name_prefix="reader") as readers,
        ThreadPoolExecutor(lanes, thread_name_prefix="pass") as passes,
    ):
        for c in range(0, len(paths), sizes.chunk_size):
            mapper = ChunkMapper(embedder, None, False, passes, lanes)
            reader = ChunkReader(
                readers,
                [root.resolve()],  # as the worker's readable_roots: resolved
                MAX_FILE_BYTES,
                embedder.input_size,
                mapper.runner.prepare_ahead,
            )
            t0 = time.perf_counter()
            read = reader.read(paths[c : c + sizes.chunk_size])
            totals["read"] += time.perf_counter() - t0
            todo = list(read.fresh.items())
            batches = [
                todo[b : b + sizes.batch_size] for b in range(0, len(todo), sizes.batch_size)
            ]
            errors += len(read.errors)
            for batch, waited in reader.decode_ahead(
                batches, mapper.lanes if ahead is None else ahead
            ):
                totals["decode_wait"] += waited
                totals["decode"] += batch.decode_s
                totals["preprocess"] += batch.preprocess_s
                errors += len(batch.errors)
                if batch.pictures:
                    mapper.submit(batch.prepared, [p.image for p in batch.pictures])
            mapped = mapper.finish()
            totals["embed"] += mapped.embed_s
            embedded += mapped.matrix().shape[0]
    wall = time.perf_counter() - start
    return {"wall": wall, "embedded": float(embedded), "errors": float(errors), **totals}


def part_pipeline(
    embedder: Any, images: Path, scratch: Path, sizes: Sizes, deadline: Deadline
) -> dict[str, Any]:
    originals = jpegs(images)
    root = scratch / "pipeline"
    paths = distinct_copies(originals, sizes.pipeline_images, root)
    out: dict[str, Any] = {
        "images": len(paths),
        "source": f"{images.name}: {len(originals)} JPEGs, copied to distinct files",
        "chunk_size": sizes.chunk_size,
        "batch_size": sizes.batch_size,
        "how": "each chunk read and hashed by every reader thread, then its batches decoded "
        "and preprocessed, one batch per reader thread, decode_ahead + 1 batches at a time "
        "(the worker's: mapper.lanes, 1 on a GPU) and never past the chunk's end; one pass "
        "thread runs the model",
        "variants": [],
    }
    for threads, ahead in sizes.pipeline_variants:
        name = f"reader_threads={threads}, decode_ahead=" + (
            "worker's" if ahead is None else str(ahead)
        )
        if deadline.left() <= 0:
            out["variants"].append({"variant": name, "skipped": "out of time"})
            continue
        run = partial(run_chunks, embedder, root=root, sizes=sizes, threads=threads, ahead=ahead)
        run(paths[: sizes.chunk_size])  # warm-up
        runs: list[dict[str, float]] = []
        try:
            result = repeated(partial(timed_chunks, run, paths, runs), deadline, len(paths))
        except OutOfTimeError:
            out["variants"].append({"variant": name, "skipped": "out of time"})
            continue
        last = runs[-1]
        stages = {
            "errors": int(last["errors"]),
            **{f"{k}_s": round(v, 3) for k, v in last.items() if k not in ("embedded", "errors")},
        }
        out["variants"].append({"variant": name, **result, "last_run": stages})
    return out


def timed_chunks(
    run: Callable[[list[str]], dict[str, float]], paths: list[str], runs: list[dict[str, float]]
) -> float:
    """One run over every path; its stage seconds appended to ``runs``."""
    stages = run(paths)
    if stages["embedded"] != len(paths):
        raise RuntimeError(f"{stages['embedded']:.0f} of {len(paths)} pictures embedded")
    runs.append(stages)
    return stages["wall"]


# ---------------------------------------------------------------- decode


def cpu_decode(datas: list[bytes], side: int, threads: int) -> float:
    """The reader's decode (drafted, upright, RGB) and the preprocessor's resize, per file."""
    from PIL import Image

    from visionnet.workers.model_worker.reader import FileError, RawFile, decode_sized

    def one(n: int) -> None:
        decoded = decode_sized(RawFile(str(n), datas[n]), side)
        if isinstance(decoded, FileError):
            raise RuntimeError(decoded.error)
        decoded[0].resize((side, side), Image.Resampling.BILINEAR)

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(len(datas))))
    return time.perf_counter() - start


def gpu_decode(datas: list[Any], side: int, batch: int, device: str, resize: bool) -> float:
    """torchvision's batched nvJPEG decode (and a resize on the device)."""
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    start = time.perf_counter()
    for b in range(0, len(datas), batch):
        decoded = decode_jpeg(datas[b : b + batch], mode=ImageReadMode.RGB, device=device)
        if resize:
            for image in decoded:
                torch.nn.functional.interpolate(
                    image[None].float(), size=(side, side), mode="bilinear", antialias=True
                )
    synchronize(device)
    return time.perf_counter() - start


def part_decode(
    images: Path, side: int, device: str, sizes: Sizes, deadline: Deadline
) -> dict[str, Any]:
    originals = jpegs(images)
    out: dict[str, Any] = {"source": f"{images.name}: {len(originals)} JPEGs", "side": side}
    cpu: dict[str, Any] = {}
    for threads in sizes.decode_threads:
        count = sizes.decode_images_per_thread * threads
        datas = [originals[n % len(originals)] for n in range(count)]
        try:
            run = partial(cpu_decode, datas, side, threads)
            cpu[str(threads)] = {"images": count, **repeated(run, deadline, count)}
        except OutOfTimeError:
            cpu[str(threads)] = {"skipped": "out of time"}
    out["cpu_threads"] = cpu
    out["gpu"] = gpu_decode_part(originals, side, device, sizes, deadline)
    return out


def gpu_decode_part(
    originals: list[bytes], side: int, device: str, sizes: Sizes, deadline: Deadline
) -> dict[str, Any]:
    try:
        import torch
        import torchvision.io  # noqa: F401
    except ImportError as exc:
        return {"skipped": f"torchvision not importable: {exc}"}
    if not device.startswith("cuda") and not sizes.dry:
        return {"skipped": "no CUDA device"}
    tensors = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in originals]
    usable = []
    for t in tensors:  # warm-up (nvJPEG's start), and files it cannot take
        try:
            gpu_decode([t], side, 1, device, resize=True)
            usable.append(t)
        except RuntimeError:
            pass
    if not usable:
        return {"skipped": "decode_jpeg took none of the files"}
    datas = [usable[n % len(usable)] for n in range(sizes.gpu_decode_images)]
    out: dict[str, Any] = {
        "device": device,
        "images": len(datas),
        "refused_files": len(tensors) - len(usable),
    }
    for batch in sizes.gpu_decode_batches:
        for resize in (False, True):
            key = f"batch {batch}" + (", with resize" if resize else "")
            try:
                run = partial(gpu_decode, datas, side, batch, device, resize)
                out[key] = repeated(run, deadline, len(datas))
            except OutOfTimeError:
                out[key] = {"skipped": "out of time"}
    return out


# ---------------------------------------------------------------- train-demo


def part_train_demo(
    train: Path, test: Path, scratch: Path, device: str, sizes: Sizes, deadline: Deadline
) -> dict[str, Any]:
    """``visionnet train-demo TRAIN OUT --eval-dir TEST --epochs 8`` on ``device``, within
    what the deadline leaves (its --time-budget-min), then the shipped demo model's
    accuracy on the same test files, through the same Classifier code."""
    from visionnet.training.recipe import Recipe
    from visionnet.training.trainer import evaluate_saved, train_demo
    from visionnet.workers.models.shipped import SHIPPED_DEMO_DIR

    compare_reserve = 0.0 if sizes.dry else 20.0
    budget = deadline.left() - compare_reserve
    if budget < sizes.need_s["train_demo"] - compare_reserve:
        raise OutOfTimeError
    recipe = Recipe.named("muon", **sizes.recipe)
    out_dir = scratch / "demo-model"
    report = train_demo(
        train,
        out_dir,
        recipe,
        eval_dir=test,
        device=device,
        time_budget_s=None if sizes.dry else budget,
        curve_images=sizes.curve_images,
        echo=lambda line: print(f"  train-demo: {line}", flush=True),
    )
    out: dict[str, Any] = {
        "command": f"visionnet train-demo {train} OUT --eval-dir {test} --epochs "
        f"{recipe.epochs:g} --device {device}"
        + ("" if sizes.dry else f" --time-budget-min {budget / 60:.2f}"),
        "recipe": recipe.optimizer,
        "epochs_planned": recipe.epochs,
        **{k: report[k] for k in ("epochs_run", "steps_run", "train_images", "timings")},
        "eval_images": report["eval_images"],
        "eval_accuracy": report["eval_accuracy"],
    }
    if "curve" in report:
        out["curve"] = report["curve"]
    if deadline.left() > 0:
        start = time.perf_counter()
        shipped = evaluate_saved(SHIPPED_DEMO_DIR, test, tuple(report["labels"]), device)
        out["shipped_model"] = {**shipped, "seconds": round(time.perf_counter() - start, 2)}
    else:
        out["shipped_model"] = {"skipped": "out of time"}
    out["service_quality"] = {
        "skipped": "bench/quality.py --compare starts the whole stack (Redis, Milvus Lite, "
        "Celery, the web), which this host does not have; the accuracy goal is measured "
        "here through the service's Classifier code, as quality.py's direct check does"
    }
    return out
