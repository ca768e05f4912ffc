"""Vectors on the wire: base64 float32 inside JSON messages (no pickle)."""

from __future__ import annotations

import base64

import numpy as np
from numpy.typing import NDArray


def pack(vectors: NDArray[np.float32]) -> str:
    return base64.b64encode(np.ascontiguousarray(vectors, dtype="<f4").tobytes()).decode()


def unpack(data: str, dim: int) -> NDArray[np.float32]:
    return np.frombuffer(base64.b64decode(data), dtype="<f4").reshape(-1, dim)
