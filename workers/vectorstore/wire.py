"""What travels from the model worker to the store writer: JSON, vectors as base64 float32.

No pickle on the wire.
"""

from __future__ import annotations

import base64
from typing import NotRequired, TypedDict

import numpy as np
from numpy.typing import NDArray


class ChunkPayload(TypedDict):
    """One embedded index chunk, as ``embed_chunk`` hands it to ``write_chunk``."""

    ids: list[str]
    paths: list[str]
    sizes: list[int]
    vectors: str
    dim: int
    model: str
    skipped: int
    errors: list[dict[str, str]]
    # Seconds per stage in the model worker (read, lookup, decode_wait, embed).
    timings: NotRequired[dict[str, float]]


def pack(vectors: NDArray[np.float32]) -> str:
    return base64.b64encode(np.ascontiguousarray(vectors, dtype="<f4").tobytes()).decode()


def unpack(data: str, dim: int) -> NDArray[np.float32]:
    return np.frombuffer(base64.b64decode(data), dtype="<f4").reshape(-1, dim)
