"""What the CPU can run fast, read from its flags, so "auto" choices can be explained.

Machines differ: one of this project's hosts has AVX512-BF16 and AMX, the one
behind older benchmark figures reported AVX2 only. The flags come from
``/proc/cpuinfo`` (Linux); elsewhere the set is empty and every choice falls
back to fp32, which is exact everywhere.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

# Either one makes bf16 matrix work fast on the CPU (oneDNN uses them through torch).
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def parse_cpuinfo(text: str) -> frozenset[str]:
    """The flags of the first processor listed in ``/proc/cpuinfo``'s text."""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """This machine's CPU flags (empty where ``/proc/cpuinfo`` cannot be read)."""
    try:
        return parse_cpuinfo(Path("/proc/cpuinfo").read_text(errors="replace"))
    except OSError:
        return frozenset()


def has_fast_bf16(flags: frozenset[str]) -> bool:
    return bool(flags & BF16_FLAGS)
