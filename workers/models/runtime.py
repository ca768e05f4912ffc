"""How a model runs on its device: precision, memory format, compilation.

On a GPU, bf16 halves memory traffic, channels_last lets cuDNN pick its fast
convolution kernels and ``torch.compile`` fuses the small ops of a ViT. On the
CPU, bf16 pays where the CPU has AVX512-BF16 or AMX, fp32 elsewhere (what
"auto" picks is choice.py's), and channels_last pays
too: oneDNN's convolutions run on NHWC without reordering each layer (the demo
model's passes over 32 pictures on 2 cores: 1.34x, ``bench/memory_format.py``).
SDPA attention needs no option: transformers uses it by default for every
model that supports it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from visionnet.workers.models.choice import (
    Choice,
    PrecisionName,
    RuntimeName,
    choose,
    onnx_available,
)
from visionnet.workers.models.cpu_flags import cpu_flags

Precision = PrecisionName
FlipInvariance = Literal["auto", "on", "off"]


@dataclass(frozen=True)
class Runtime:
    """``models.*`` as set; ``backend`` (``models.runtime``) and ``precision`` may be "auto",
    resolved per device by ``choice.choose`` when a model loads."""

    precision: Precision = "auto"
    channels_last: bool = True
    compile: bool = False
    flip_invariant: FlipInvariance = "auto"
    backend: RuntimeName = "auto"
    # Where exported ONNX graphs are kept (the worker passes <data_dir>/onnx); empty:
    # the user's cache folder (onnx_cache.default_root).
    onnx_cache: str = ""
    # Where load-time agreements are kept (agreement_cache.py; the worker passes
    # <data_dir>/agreement); empty: measured at every load.
    agreement_cache: str = ""

    def flips(self, config: Any) -> bool:
        """Whether a model averages its outputs over each image and its mirror."""
        from visionnet.workers.models.info import FLIP_INVARIANT_FLAG

        if self.flip_invariant == "auto":
            return bool(getattr(config, FLIP_INVARIANT_FLAG, False))
        return self.flip_invariant == "on"

    def choice(self, device: str) -> Choice:
        """The runtime and precision a model runs with on ``device``, and why (choice.py)."""
        cuda_bf16 = False
        if device.startswith("cuda"):
            import torch

            cuda_bf16 = bool(torch.cuda.is_bf16_supported())
        return choose(
            device=device,
            runtime=self.backend,
            precision=self.precision,
            flags=cpu_flags(),
            onnx_available=onnx_available(),
            cuda_bf16=cuda_bf16,
        )

    def dtype(self, device: str) -> Any:
        """The torch dtype a model runs in on ``device`` (fp32 under onnxruntime)."""
        return torch_dtype(self.choice(device))

    def memory_format(self, model: Any) -> Any:
        """channels_last for conv nets, on any device; ``None`` means leave tensors as they are."""
        import torch

        if not self.channels_last:
            return None
        has_conv = any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
        return torch.channels_last if has_conv else None

    def prepare(self, model: Any, device: str) -> tuple[Any, Any]:
        """Put ``model`` in eval mode on ``device``; return (callable forward, memory format)."""
        model.to(device).eval()
        fmt = self.memory_format(model)
        if fmt is not None:
            model.to(memory_format=fmt)
        forward = model
        if self.compile:
            import torch

            forward = torch.compile(model)
        return forward, fmt


def torch_dtype(choice: Choice) -> Any:
    """The dtype of the torch weights: onnxruntime's graphs (int8 too) come from fp32 ones."""
    import torch

    if choice.runtime != "torch":
        return torch.float32
    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(choice.precision, torch.float32)


# The layers whose weights (and biases) take the lower precision: the matrix
# multiplies that hold nearly all of a model's weights and time. Norms, embeddings
# and the residual stream itself stay fp32 (``lower_precision``).
_MATMUL_LAYERS = ("Linear", "Conv1d", "Conv2d", "Conv3d")


def lower_precision(model: Any, dtype: Any, *, keep: bool = False) -> Callable[[], None]:
    """Cast ``model``'s matmul layers to ``dtype``; everything else stays fp32.

    Run under ``autocast(dtype)`` (``ImageModel.precision_scope``), the matmuls
    read bf16 weights and inputs while the residual stream, norms and softmax
    stay fp32. Casting the whole model instead rounds the stream to bf16 at every
    layer: on 2,000 CIFAR-10 pictures a ViT-B/32 (random weights) then kept
    recall@10 against fp32 at 0.989 and a CLIP B/32 at 0.977; this way both keep
    0.991-0.992, at 0.90-0.97x the speed of the whole cast (a scratch run; the
    figures in bench/RESULTS.md are bench/cpu_runtime.py's).

    Returns what puts the fp32 weights back: with ``keep`` a copy of them stays
    on the CPU until then (a round trip through bf16 would not restore them).
    """
    import torch

    kept: list[tuple[Any, dict[str, Any]]] = []
    for module in model.modules():
        if type(module).__name__ in _MATMUL_LAYERS and isinstance(module, torch.nn.Module):
            if keep:
                state = {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}
                kept.append((module, state))
            module.to(dtype)

    def restore() -> None:
        for module, state in kept:
            module.to(torch.float32).load_state_dict(state)
        kept.clear()

    return restore


def bulk_passes(setting: int, device: str, cores: int | None) -> int:
    """How many forward passes a model worker runs at once over an index chunk.

    On a CPU, two passes on one thread each keep both cores of a small machine
    busier, for less CPU per picture, than one pass on two threads (oneDNN's
    threads wait for each other inside every layer). A GPU runs one pass at a time.
    """
    if device.startswith("cuda"):
        return 1
    if setting:
        return setting
    return 2 if (cores or 1) >= 2 else 1
