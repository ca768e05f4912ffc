"""The model alone on the CPU: torch fp32 against onnxruntime fp32 and int8, side by side.

``python -m bench.onnx_model_speed`` (writes ``bench/results/onnx_model_speed.json``).
Two models: the shipped demo classifier (CifarNet, batch 64 at 32 px, the graph
with the head's input as the worker exports it) and a CLIP ViT-B/32 vision tower
with its projection built from its config (batch 16 at 224 px; speed does not
depend on the weights). Each runtime on 2 intra-op threads, one pass at a time,
interleaved, each timing repeated 3 times: img/s min and median, and the
smallest cosine of an output row to torch fp32's on the same random batch.
int8 is ``quantize_dynamic`` (weights QInt8) of the fp32 graph, once over
MatMul/Gemm only and once with Conv too (ConvInteger), to choose the op types.

Then two passes at once on 2 cores, as the bulk worker runs them (two pass
threads): one session with 1 intra-op thread called from both threads, one
session per thread, one session of 2 threads called from both, and one session
of 2 threads one pass at a time.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from bench.report import spread, write_report
from visionnet.workers.models.onnx_export import ExportPlan, export_fp32
from visionnet.workers.models.onnx_forward import make_session
from visionnet.workers.models.runtime import Runtime
from visionnet.workers.models.shipped import SHIPPED_DEMO_DIR

ROOT = Path(__file__).resolve().parent
Run = Callable[[], Any]


def demo_model() -> tuple[Any, ExportPlan, tuple[int, ...]]:
    from transformers import AutoModelForImageClassification

    from visionnet.workers.models.cifarnet import register_auto_classes

    register_auto_classes()
    model = AutoModelForImageClassification.from_pretrained(
        str(SHIPPED_DEMO_DIR), dtype=torch.float32
    )
    return model.eval(), ExportPlan(("logits", "head_input")), (64, 3, 32, 32)


def clip_b32() -> tuple[Any, ExportPlan, tuple[int, ...]]:
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    config = CLIPVisionConfig(projection_dim=512)  # the defaults are ViT-B/32 at 224
    model: Any = CLIPVisionModelWithProjection(config)
    return model.eval(), ExportPlan(("image_embeds",)), (16, 3, 224, 224)


def quantized(source: Path, target: Path, ops: list[str]) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(source, target, weight_type=QuantType.QInt8, op_types_to_quantize=ops)
    return target


def session_run(session: Any, output: str, array: np.ndarray) -> Run:
    """One pass of ``session`` over ``array``, returning ``output``."""
    return lambda: session.run([output], {"pixel_values": array})[0]


def rate(run: Run, images: int, passes: int) -> float:
    run()  # warm: the first pass allocates
    start = time.perf_counter()
    for _ in range(passes):
        run()
    return images * passes / (time.perf_counter() - start)


def two_at_once(runs: tuple[Run, Run], images: int, passes: int) -> float:
    """img/s of two threads each running ``passes`` passes at the same time."""
    for run in runs:
        run()
    threads = [threading.Thread(target=lambda r=r: [r() for _ in range(passes)]) for r in runs]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return 2 * images * passes / (time.perf_counter() - start)


def cosine_min(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return float(cos.min())


def measure(name: str, build: Callable[[], tuple[Any, ExportPlan, tuple[int, ...]]],
            workdir: Path, repeats: int, passes: int) -> dict[str, Any]:  # fmt: skip
    model, plan, shape = build()
    batch = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    fp32 = workdir / f"{name}-fp32.onnx"
    export_fp32(model, plan, batch[:2], fp32)
    graphs = {
        "onnxruntime fp32": fp32,
        "onnxruntime int8 (MatMul, Gemm)": quantized(
            fp32, workdir / f"{name}-int8.onnx", ["MatMul", "Gemm"]
        ),
        "onnxruntime int8 (MatMul, Gemm, Conv)": quantized(
            fp32, workdir / f"{name}-int8-conv.onnx", ["MatMul", "Gemm", "Conv"]
        ),
    }
    torch.set_num_threads(2)
    forward, fmt = Runtime(precision="fp32").prepare(model, "cpu")
    pixels = batch if fmt is None else batch.contiguous(memory_format=fmt)
    out_name = plan.outputs[0]

    def torch_run() -> Any:
        with torch.inference_mode():
            return getattr(forward(pixel_values=pixels), out_name)

    reference = torch_run().numpy()
    array = batch.numpy()
    runs: dict[str, Run] = {"torch fp32 (channels_last for convs)": torch_run}
    for label, path in graphs.items():
        runs[label] = session_run(make_session(path, 2), out_name, array)
    cosines = {label: cosine_min(np.asarray(run()), reference) for label, run in runs.items()}
    rates: dict[str, list[float]] = {label: [] for label in runs}
    for _ in range(repeats):  # interleaved: a noisy neighbour hits every runtime alike
        for label, run in runs.items():
            rates[label].append(rate(run, shape[0], passes))
    # Two passes at once on 2 cores (fp32 and int8 MatMul/Gemm graphs).
    lanes: dict[str, list[float]] = {}
    for label in ("onnxruntime fp32", "onnxruntime int8 (MatMul, Gemm)"):
        path = graphs[label]
        one = make_session(path, 1)
        pair = (make_session(path, 1), make_session(path, 1))
        two = make_session(path, 2)

        ways = {
            f"{label}: 1 session x 1 thread, 2 passes at once": (
                session_run(one, out_name, array),
                session_run(one, out_name, array),
            ),
            f"{label}: 2 sessions x 1 thread, 2 passes at once": (
                session_run(pair[0], out_name, array),
                session_run(pair[1], out_name, array),
            ),
            f"{label}: 1 session x 2 threads, 2 passes at once": (
                session_run(two, out_name, array),
                session_run(two, out_name, array),
            ),
        }
        for key in ways:
            lanes[key] = []
        lanes[f"{label}: 1 session x 2 threads, 1 pass at a time"] = []
        for _ in range(repeats):
            for key, pair_runs in ways.items():
                lanes[key].append(two_at_once(pair_runs, shape[0], max(1, passes // 2)))
            lanes[f"{label}: 1 session x 2 threads, 1 pass at a time"].append(
                rate(session_run(two, out_name, array), shape[0], passes)
            )
    return {
        "batch": list(shape),
        "runtimes": {
            label: {"img_s": spread(rates[label]), "cosine_min_to_torch_fp32": cosines[label]}
            for label in runs
        },
        "two_passes": {key: {"img_s": spread(v)} for key, v in lanes.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "onnx_model_speed.json")
    args = parser.parse_args()
    console = Console()
    models = {"demo CifarNet": (demo_model, 10), "CLIP ViT-B/32 vision": (clip_b32, 3)}
    # Other work on the machine slows every runtime alike (interleaved); the load says how much.
    report: dict[str, Any] = {"threads": 2, "repeats": args.repeats, "models": {}}
    report["load_average_before"] = list(os.getloadavg())
    with tempfile.TemporaryDirectory() as tmp:
        for name, (build, passes) in models.items():
            slug = name.split()[0].lower()
            report["models"][name] = measure(slug, build, Path(tmp), args.repeats, passes)
    report["load_average_after"] = list(os.getloadavg())
    table = Table("model", "runtime", "img/s min", "img/s median", "cosine min")
    for name, found in report["models"].items():
        for label, row in found["runtimes"].items():
            s = row["img_s"]
            table.add_row(name, label, f"{s['min']:.1f}", f"{s['median']:.1f}",
                          f"{row['cosine_min_to_torch_fp32']:.5f}")  # fmt: skip
        for label, row in found["two_passes"].items():
            s = row["img_s"]
            table.add_row(name, label, f"{s['min']:.1f}", f"{s['median']:.1f}", "")
    console.print(table)
    write_report(args.out, report, console)


if __name__ == "__main__":
    main()
