"""An image model's forward pass run by onnxruntime, called like the torch model's.

``use_onnxruntime`` swaps a loaded model's ``forward`` for an ``OrtForward``
where its ``choice`` says onnxruntime: the graph is exported from the loaded
model (or taken from the cache, ``onnx_cache.py``), quantized for int8, loaded
into a session and checked on a sample against torch before anything relies
on it. Whatever fails on the way leaves the torch forward in place, with the
reason in a warning and in ``choice``. Preprocessing, flip averaging, labels and
the text tower stay as they are: only the image model's pass changes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from visionnet.workers.models.onnx_cache import (
    MODEL_FILE,
    Entry,
    ensure,
    tensors_digest,
    versions,
)
from visionnet.workers.models.onnx_export import (
    HEAD_INPUT,
    INPUT,
    INT8_OP_TYPES,
    OPSET,
    ExportError,
    ExportPlan,
    export_fp32,
    plan_outputs,
    quantize_int8,
)

log = logging.getLogger(__name__)
# The fp32 graph must give torch's outputs: it is the same arithmetic in another order.
FP32_TOLERANCE = 1e-3


@dataclass
class OrtOutput:
    """The attributes the callers read off a transformers output, as torch tensors."""

    logits: Any = None
    image_embeds: Any = None
    pooler_output: Any = None
    last_hidden_state: Any = None
    head_input: Any = None


class OrtForward:
    """``forward(pixel_values=...)`` through an onnxruntime session (thread-safe)."""

    def __init__(self, session: Any, plan: ExportPlan, entry: Entry, precision: str) -> None:
        self.session = session
        self.plan = plan
        self.entry = entry
        self.precision = precision

    @property
    def gives_head_input(self) -> bool:
        """Its output holds the classifier head's input (no forward hook needed)."""
        return self.plan.head

    def __call__(self, pixel_values: Any, **_: Any) -> OrtOutput:
        import torch

        pixels = pixel_values.detach().to("cpu", torch.float32).contiguous().numpy()
        values = self.session.run(list(self.plan.outputs), {INPUT: pixels})
        return OrtOutput(
            **{n: torch.from_numpy(v) for n, v in zip(self.plan.outputs, values, strict=True)}
        )


def make_session(path: Path, threads: int) -> Any:
    """A CPU session on ``threads`` intra-op threads, every graph optimisation on.

    The bulk worker runs its passes at once from several threads, each pass on
    cores / passes threads (torch's ``OMP_NUM_THREADS``, set by the launcher):
    one session serves them all, its runs on their callers' threads. Measured
    with bench/onnx_model_speed.py's functions (CLIP ViT-B/32 vision, batch 16,
    2 cores, img/s median of 5, other work on the host): int8 59.5 from one shared
    1-thread session, 57.9 from one session per pass thread (twice the memory),
    34.3 from one 2-thread session one pass at a time; fp32 14.9, 13.2 and 9.4.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def use_onnxruntime(model: Any, root: Path) -> None:
    """Run ``model``'s pass on onnxruntime at ``model.choice.precision``, or say why not.

    Called from ``ImageModel._ready`` once the torch model (fp32) and its
    preprocessing are ready. On success the torch weights go to the meta
    device (freed; the module keeps its config and dtype for the callers).
    """
    import torch

    choice = model.choice
    try:
        forward = load(model, choice.precision, root, torch.get_num_threads())
    except Exception as exc:  # export, quantization or session: torch serves instead
        reason = f"onnxruntime {choice.precision} failed for {model.name} ({exc})"
        log.warning("%s; running it on torch", reason)
        model.choice = choice.fallback(reason)
        return
    model.forward = forward
    model.memory_format = None  # the session takes plain NCHW arrays
    model.model.to("meta")
    log.info(
        "%s runs on onnxruntime %s (%s graph %s)",
        model.name,
        choice.precision,
        "exported" if forward.entry.built else "cached",
        forward.entry.folder.name[:16],
    )


def load(model: Any, precision: str, root: Path, threads: int) -> OrtForward:
    """The checked ``OrtForward`` of ``model`` (exported on first use, cached after)."""
    import torch

    if precision not in ("fp32", "int8"):
        raise ExportError(f"onnxruntime runs fp32 or int8, not {precision}")
    torch_model = model.model
    if any(p.dtype != torch.float32 for p in torch_model.parameters()):
        raise ExportError("the export needs the model loaded in fp32")
    sample = _sample(model)
    plan = plan_outputs(model.kind, torch_model, sample)
    with torch.inference_mode():
        reference = _outputs(torch_model, plan, sample)
    weights = tensors_digest(torch_model.state_dict())
    parts = key_parts(model, plan, "fp32", weights)
    entry = ensure(
        root, parts, lambda folder: export_fp32(torch_model, plan, sample, folder / MODEL_FILE)
    )
    if precision == "int8":
        fp32 = entry
        entry = ensure(
            root,
            key_parts(model, plan, "int8", weights),
            lambda folder: quantize_int8(fp32.model, folder / MODEL_FILE),
        )
    try:
        session = make_session(entry.model, threads)
    except Exception as exc:
        raise ExportError(f"onnxruntime could not load the graph: {exc}") from exc
    forward = OrtForward(session, plan, entry, precision)
    _check(forward, sample, reference, precision)
    return forward


def key_parts(model: Any, plan: ExportPlan, precision: str, weights: str) -> dict[str, Any]:
    """Everything a graph depends on: the cache key is a hash of these."""
    parts: dict[str, Any] = {
        "name": model.name,
        "kind": model.kind,
        "weights": weights,
        "versions": versions(),
        "precision": precision,
        "outputs": list(plan.outputs),
        "opset": OPSET,
    }
    if precision == "int8":
        parts["int8_op_types"] = list(INT8_OP_TYPES)
    return parts


def _sample(model: Any) -> Any:
    """Two images' worth of the model's input (random values, the real shape), batch 2
    so the exporter cannot mistake the batch for a constant 1."""
    import torch
    from PIL import Image

    side = model.input_size or 224
    shape = model.preprocess([Image.new("RGB", (side, side))])["pixel_values"].shape[1:]
    generator = torch.Generator().manual_seed(0)
    return torch.randn((2, *shape), generator=generator)


def _outputs(torch_model: Any, plan: ExportPlan, sample: Any) -> list[Any]:
    seen: list[Any] = []
    hook = None
    if plan.head:
        hook = torch_model.classifier.register_forward_pre_hook(
            lambda _m, args: seen.append(args[0])
        )
    try:
        out = torch_model(pixel_values=sample)
    finally:
        if hook is not None:
            hook.remove()
    return [seen[0].flatten(1) if n == HEAD_INPUT else getattr(out, n) for n in plan.outputs]


def _check(forward: OrtForward, sample: Any, reference: list[Any], precision: str) -> None:
    """The session's outputs against torch's on ``sample``: shapes always, values in fp32
    (int8 changes values by design; its quality is measured, not assumed)."""
    import torch

    out = forward(pixel_values=sample)
    for name, expected in zip(forward.plan.outputs, reference, strict=True):
        got = getattr(out, name)
        if tuple(got.shape) != tuple(expected.shape):
            raise ExportError(
                f"{name} has shape {tuple(got.shape)}, torch's {tuple(expected.shape)}"
            )
        if not bool(torch.isfinite(got).all()):
            raise ExportError(f"{name} has values that are not finite")
        if precision == "fp32":
            diff = float((got - expected.float()).abs().max())
            scale = max(1.0, float(expected.abs().max()))
            if diff > FP32_TOLERANCE * scale:
                raise ExportError(f"{name} differs from torch's by {diff:.2g}")
