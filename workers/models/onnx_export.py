"""A loaded torch model as an ONNX graph (fp32), and that graph quantized to int8.

The graph is exported from the very model the worker loaded (same weights, same
config), so onnxruntime's fp32 answers match torch's to about 1e-6. Its outputs
are named after the attributes the callers read (``image_embeds``,
``pooler_output``, ``last_hidden_state``, ``logits``); a classifier's graph has
one more, ``head_input``, what its head read, so classify-while-indexing keeps
its one pass (``one_pass.py``) without a forward hook, which onnxruntime has not.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# 17 has LayerNormalization as one op (ViT, CLIP); onnxruntime 1.32 runs up to 23.
OPSET = 17
INPUT = "pixel_values"
HEAD_INPUT = "head_input"
# What an embedder's caller reads, best first (embedder.py's order).
EMBEDDER_OUTPUTS = ("image_embeds", "pooler_output", "last_hidden_state")
# Op types quantize_dynamic turns into int8. Conv is left out: as ConvInteger it is
# far slower than onnxruntime's fp32 convolutions. bench/onnx_model_speed.py (model
# alone, 2 threads, img/s median of 3, on this project's 2-core host while other work
# shared it; bench/results/onnx_model_speed.json): the demo net (batch 64 at 32 px)
# 915 with MatMul and Gemm only, 83 with Conv too (fp32: 855); CLIP ViT-B/32's vision
# tower (batch 16 at 224, one Conv: its patch embedding) 130 against 95. An earlier
# run under heavier load agreed: 523 against 63, and 19.6 against 18.3.
INT8_OP_TYPES = ("MatMul", "Gemm")


class ExportError(RuntimeError):
    """The model could not be exported or quantized; the message says why."""


@dataclass(frozen=True)
class ExportPlan:
    """Which outputs the graph returns, in order (attribute names of the model's output)."""

    outputs: tuple[str, ...]

    @property
    def head(self) -> bool:
        return HEAD_INPUT in self.outputs


def plan_outputs(kind: str, model: Any, sample: Any) -> ExportPlan:
    """The outputs the callers read, found by running ``model`` once on ``sample``.

    An embedder reads the first of ``EMBEDDER_OUTPUTS`` that the model returns
    (a ViT without its pooler returns no ``pooler_output``); a classifier reads
    ``logits`` and, where its head is a module a hook can see, the head's input.
    """
    import torch

    if kind == "classifier":
        head = getattr(model, "classifier", None)
        return ExportPlan(
            ("logits", HEAD_INPUT) if isinstance(head, torch.nn.Module) else ("logits",)
        )
    with torch.inference_mode():
        out = model(pixel_values=sample)
    for name in EMBEDDER_OUTPUTS:
        if getattr(out, name, None) is not None:
            return ExportPlan((name,))
    raise ExportError(f"the model returns none of {', '.join(EMBEDDER_OUTPUTS)}")


def _wrapper(model: Any, plan: ExportPlan) -> Any:
    """A module whose forward returns ``plan``'s outputs as a tuple (what the exporter traces)."""
    import torch

    class Outputs(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.seen: Any = None
            self.hook = (
                model.classifier.register_forward_pre_hook(self._keep) if plan.head else None
            )

        def _keep(self, _module: Any, args: tuple[Any, ...]) -> None:
            self.seen = args[0]

        def forward(self, pixel_values: Any) -> tuple[Any, ...]:
            out = self.model(pixel_values=pixel_values)
            return tuple(
                self.seen.flatten(1) if n == HEAD_INPUT else getattr(out, n) for n in plan.outputs
            )

    return Outputs().eval()


def export_fp32(model: Any, plan: ExportPlan, sample: Any, path: Path) -> None:
    """Write ``model``'s graph to ``path``, batch axis dynamic; ``model`` stays in eval mode.

    The exporter switches the module it is given back to its mode of before; a
    wrapper left in training mode would put the model's BatchNorm layers in
    training mode with it (seen: the demo net's logits off by 2 after export).
    """
    import torch

    wrapper = _wrapper(model, plan)
    axes = {name: {0: "batch"} for name in (INPUT, *plan.outputs)}
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation, tracer notes
            torch.onnx.export(
                wrapper,
                (sample,),
                str(path),
                input_names=[INPUT],
                output_names=list(plan.outputs),
                dynamic_axes=axes,
                opset_version=OPSET,
                dynamo=False,
            )
    except Exception as exc:
        raise ExportError(f"torch.onnx.export failed: {type(exc).__name__}: {exc}") from exc
    finally:
        model.eval()
        if wrapper.hook is not None:  # the wrapper's hook goes with it
            wrapper.hook.remove()


def quantize_int8(source: Path, target: Path) -> None:
    """``source``'s graph with its weights in int8 (dynamic quantization: activations are
    quantized per batch as they come, so no calibration pictures are needed)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    try:
        quantize_dynamic(
            source,
            target,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=list(INT8_OP_TYPES),
        )
    except Exception as exc:
        raise ExportError(f"quantize_dynamic failed: {type(exc).__name__}: {exc}") from exc
