"""Which runtime and precision a model runs with, and why: one pure function.

``models.runtime`` and ``models.precision`` may each say "auto". What "auto"
resolves to depends on the device, the CPU's flags and whether onnxruntime is
installed, and is measured (bench/cpu_runtime.py, bench/RESULTS.md):

* On a CPU with AVX512-BF16 or AMX, torch in bf16 (matmuls in bf16, the rest
  fp32: runtime.lower_precision). A model keeps it only if it keeps recall@10
  against fp32 at 0.99 on the load-time probes (``confirm``); otherwise it runs
  fp32 and the reason says so.
* On other CPUs, torch in fp32. onnxruntime in fp32 is exact to about 1e-6 but
  ran a CLIP ViT-B/32's index job at 1.03x torch fp32's and the demo conv net's
  at 1.10x (0.73x in a busier run; bench/RESULTS.md), within the spread between
  two stacks of one setting, and its first load exports the graph, so "auto"
  leaves it to an explicit setting.
* int8 (onnxruntime's dynamic quantization) is the fastest of all but changes
  the vectors, so it is never picked by "auto": only when asked for.
* On a GPU, torch in bf16 (fp16 where bf16 is not supported), confirmed at load
  the same way.

The caller logs ``reason`` in the worker's warm-up line and publishes it in
``GET /api/v1/models``, so a user can see what "auto" chose on their machine.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from visionnet.workers.models.cpu_flags import has_fast_bf16

RuntimeName = Literal["auto", "torch", "onnxruntime"]
PrecisionName = Literal["auto", "fp32", "fp16", "bf16", "int8"]
# What onnxruntime runs here (its CPU kernels have no bf16 or fp16 speed-up).
ONNX_PRECISIONS = ("fp32", "int8")


@dataclass(frozen=True)
class Choice:
    """A resolved runtime ("torch" | "onnxruntime") and precision ("fp32" | "fp16" |
    "bf16" | "int8"), with the reason a user reads."""

    runtime: str
    precision: str
    reason: str
    # "auto" picked a lower precision: the model keeps it only if its measured
    # agreement with fp32 clears the gate at load (ImageModel._lower_precision).
    confirm: bool = False

    def fallback(self, why: str) -> Choice:
        """torch instead of onnxruntime (a model or op that does not export, say).

        int8 has no torch path here, so it becomes fp32: exact, and slower.
        """
        precision = "fp32" if self.precision == "int8" else self.precision
        return replace(
            self, runtime="torch", precision=precision, reason=f"{why}; torch {precision} instead"
        )

    def as_fp32(self, why: str) -> Choice:
        """fp32 on the same runtime: what auto falls back to when a lower precision
        moved the model's results too far."""
        return replace(
            self, precision="fp32", confirm=False, reason=f"{self.reason}; {why}: fp32 instead"
        )

    @property
    def label(self) -> str:
        """What a collection records about its vectors, e.g. ``onnxruntime/int8``."""
        return f"{self.runtime}/{self.precision}"


class ChoiceError(ValueError):
    """Settings that cannot run together; the message says which and what to set."""


def choose(
    *,
    device: str,
    runtime: RuntimeName,
    precision: PrecisionName,
    flags: frozenset[str],
    onnx_available: bool,
    cuda_bf16: bool = False,
) -> Choice:
    """Resolve ``models.runtime`` and ``models.precision`` for one device.

    Raises ChoiceError for explicit settings that contradict each other (torch
    int8, onnxruntime bf16); a missing onnxruntime is not an error but a
    fallback with its reason, so a host without the extra still serves.
    """
    if device.startswith("cuda"):
        return _on_gpu(runtime, precision, cuda_bf16)
    if runtime == "torch" and precision == "int8":
        raise ChoiceError(
            "models.precision int8 runs on onnxruntime only: set models.runtime to "
            "onnxruntime or auto"
        )
    if runtime == "onnxruntime" and precision in ("bf16", "fp16"):
        raise ChoiceError(
            f"onnxruntime runs fp32 or int8 on the CPU, not {precision}: set models.runtime "
            "to torch or auto, or models.precision to fp32, int8 or auto"
        )
    fast_bf16 = has_fast_bf16(flags)
    if precision == "auto":
        if runtime == "onnxruntime":
            resolved, why = "fp32", "onnxruntime runs fp32 unless int8 is asked for"
        elif fast_bf16:
            resolved, why = "bf16", "the CPU has AVX512-BF16/AMX"
        else:
            resolved, why = "fp32", "the CPU has no AVX512-BF16/AMX"
    else:
        resolved, why = precision, "as set"
    if runtime == "auto":
        if resolved == "int8":
            engine, how = "onnxruntime", "int8 runs on onnxruntime"
        else:
            engine = "torch"
            how = (
                "fp32 stays on torch unless set: onnxruntime fp32 was no faster"
                if resolved == "fp32"
                else f"{resolved} runs on torch"
            )
    else:
        engine, how = runtime, "as set"
    choice = Choice(
        engine,
        resolved,
        f"runtime {engine} ({how}), precision {resolved} ({why})",
        confirm=precision == "auto" and resolved != "fp32",
    )
    if engine == "onnxruntime" and not onnx_available:
        return choice.fallback("onnxruntime is not installed (pip install 'visionnet[onnx]')")
    return choice


def _on_gpu(runtime: RuntimeName, precision: PrecisionName, cuda_bf16: bool) -> Choice:
    if precision == "int8":
        raise ChoiceError("models.precision int8 is for the CPU (onnxruntime); not on a GPU")
    why = "on a GPU" if runtime != "onnxruntime" else "onnxruntime runs on the CPU only here"
    if precision == "auto":
        resolved = "bf16" if cuda_bf16 else "fp16"
        reason = f"runtime torch ({why}), precision {resolved} (GPU)"
        return Choice("torch", resolved, reason, confirm=True)
    return Choice("torch", precision, f"runtime torch ({why}), precision {precision} (as set)")


def onnx_available() -> bool:
    """Whether the onnx extra is installed (without importing onnxruntime itself)."""
    from importlib.util import find_spec

    return find_spec("onnxruntime") is not None and find_spec("onnx") is not None
