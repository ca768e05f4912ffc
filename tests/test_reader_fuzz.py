"""A property of the reader: mutated bytes of every format give a picture or that
file's error, never an exception (hypothesis; a few seconds)."""

from __future__ import annotations

import warnings
from functools import cache

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.odd_files import FORMATS, encoded, jpeg_with_exif
from visionnet.workers.model_worker.reader import FileError, RawFile, decode_sized

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@cache
def _sample(fmt: str) -> bytes:
    return encoded(11, fmt)


def _decodes_or_fails_alone(data: bytes) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns about corrupt EXIF
        out = decode_sized(RawFile("/p/x", data), draft=16)
    if isinstance(out, FileError):
        assert out.name == "/p/x" and out.error
    else:
        image, (width, height) = out
        assert image.mode == "RGB" and width > 0 and height > 0


@FUZZ
@given(
    fmt=st.sampled_from(sorted(FORMATS)),
    edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), max_size=8),
    cut=st.floats(0, 1),
)
def test_mutated_and_truncated_files_of_every_format(
    fmt: str, edits: list[tuple[float, int]], cut: float
) -> None:
    data = bytearray(_sample(fmt))
    for where, value in edits:
        data[int(where * len(data))] = value
    _decodes_or_fails_alone(bytes(data[: max(1, int(cut * len(data)))]))


@FUZZ
@given(
    edits=st.lists(
        st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=6
    )
)
def test_mutated_exif_blocks(edits: list[tuple[float, int]]) -> None:
    data, start, end = jpeg_with_exif(12)
    out = bytearray(data)
    for where, value in edits:
        out[start + int(where * (end - start))] = value
    _decodes_or_fails_alone(bytes(out))
