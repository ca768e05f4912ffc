"""models.runtime and models.precision: what "auto" resolves to, and which pairs are refused.

``choose()`` is pure: the CPU flags, the device and whether onnxruntime is installed are
its arguments, so every machine's answer is tested here on this one.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from visionnet.config.settings import ModelSettings, runtime_conflict
from visionnet.workers.models.choice import ChoiceError, choose

BF16 = frozenset({"avx2", "avx512f", "avx512_bf16"})
AMX = frozenset({"avx2", "amx_bf16", "amx_tile"})
AVX2 = frozenset({"avx2", "fma"})
CONTRADICTIONS = [("torch", "int8"), ("onnxruntime", "bf16"), ("onnxruntime", "fp16")]


def _models(**values: str) -> ModelSettings:
    return ModelSettings(classifier="c", embedder="e", **values)  # type: ignore[arg-type]


@pytest.mark.parametrize(("runtime", "precision"), CONTRADICTIONS)
def test_settings_refuse_a_runtime_that_cannot_run_the_precision(
    runtime: str, precision: str
) -> None:
    with pytest.raises(ChoiceError) as chosen:
        choose(
            device="cpu",
            runtime=runtime,
            precision=precision,  # type: ignore[arg-type]
            flags=BF16,
            onnx_available=True,
        )
    with pytest.raises(ValidationError) as refused:
        _models(runtime=runtime, precision=precision)
    # The same words where the settings load and where a worker resolves them.
    assert str(chosen.value) in str(refused.value)
    assert runtime_conflict(runtime, precision) == str(chosen.value)


def test_settings_take_every_pair_that_runs() -> None:
    for runtime in ("auto", "torch", "onnxruntime"):
        for precision in ("auto", "fp32", "fp16", "bf16", "int8"):
            if (runtime, precision) not in CONTRADICTIONS:
                assert _models(runtime=runtime, precision=precision).precision == precision


# (flags, runtime, precision, onnx installed, device, cuda bf16) -> the label "auto" resolves to
CASES = [
    (BF16, "auto", "auto", True, "cpu", False, "torch/bf16"),
    (AMX, "auto", "auto", True, "cpu", False, "torch/bf16"),
    (BF16, "auto", "auto", False, "cpu", False, "torch/bf16"),
    (AVX2, "auto", "auto", True, "cpu", False, "torch/fp32"),
    (AVX2, "auto", "auto", False, "cpu", False, "torch/fp32"),
    (frozenset(), "auto", "auto", True, "cpu", False, "torch/fp32"),
    (frozenset(), "torch", "auto", True, "cpu", False, "torch/fp32"),
    (BF16, "torch", "auto", True, "cpu", False, "torch/bf16"),
    (BF16, "onnxruntime", "auto", True, "cpu", False, "onnxruntime/fp32"),
    (BF16, "auto", "fp32", True, "cpu", False, "torch/fp32"),
    (BF16, "auto", "fp32", False, "cpu", False, "torch/fp32"),
    (AVX2, "auto", "bf16", True, "cpu", False, "torch/bf16"),
    (AVX2, "auto", "int8", True, "cpu", False, "onnxruntime/int8"),
    (AVX2, "onnxruntime", "int8", False, "cpu", False, "torch/fp32"),
    (AVX2, "onnxruntime", "fp32", False, "cpu", False, "torch/fp32"),
    (AVX2, "auto", "auto", True, "cuda", True, "torch/bf16"),
    (AVX2, "auto", "auto", True, "cuda:1", False, "torch/fp16"),
    (BF16, "onnxruntime", "auto", True, "cuda", True, "torch/bf16"),
    (AVX2, "torch", "fp32", True, "cuda", True, "torch/fp32"),
]


@pytest.mark.parametrize(
    ("flags", "runtime", "precision", "onnx", "device", "bf16", "label"), CASES
)
def test_auto_picks_what_the_cpu_flags_and_the_device_allow(
    flags: frozenset[str],
    runtime: str,
    precision: str,
    onnx: bool,
    device: str,
    bf16: bool,
    label: str,
) -> None:
    chosen = choose(
        device=device,
        runtime=runtime,  # type: ignore[arg-type]
        precision=precision,  # type: ignore[arg-type]
        flags=flags,
        onnx_available=onnx,
        cuda_bf16=bf16,
    )
    assert chosen.label == label
    assert chosen.reason  # what the warm-up line and GET /models say
    # A lower precision auto picked is confirmed at load; one that was set is not.
    assert chosen.confirm == (precision == "auto" and chosen.precision in ("bf16", "fp16"))
    fallback = chosen.as_fp32("recall@10 0.980")
    assert fallback.label == f"{chosen.runtime}/fp32" and not fallback.confirm
    assert fallback.reason.startswith(chosen.reason) and "0.980: fp32 instead" in fallback.reason
    if runtime == "onnxruntime" and not onnx and device == "cpu":
        assert "not installed" in chosen.reason


def test_auto_never_picks_int8_and_a_gpu_refuses_it() -> None:
    for flags in (BF16, AMX, AVX2, frozenset()):
        for onnx in (True, False):
            for runtime in ("auto", "torch", "onnxruntime"):
                chosen = choose(
                    device="cpu",
                    runtime=runtime,  # type: ignore[arg-type]
                    precision="auto",
                    flags=flags,
                    onnx_available=onnx,
                )
                assert chosen.precision in ("fp32", "bf16")
    with pytest.raises(ChoiceError, match="GPU"):
        choose(device="cuda", runtime="auto", precision="int8", flags=AVX2, onnx_available=True)
