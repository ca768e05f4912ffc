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
