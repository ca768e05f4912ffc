"""The reader's per-file guard and the chunk stages (reader, mapper, sink), without Celery."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.helpers import image_bytes
from tests.odd_files import FORMATS, encoded, exif_breakers
from visionnet.core.pathtext import to_text
from visionnet.workers.model_worker.chunk_mapper import ChunkMapper
from visionnet.workers.model_worker.chunk_reader import ChunkReader
from visionnet.workers.model_worker.chunk_sink import ChunkSink
from visionnet.workers.model_worker.reader import (
    FileError,
    RawFile,
    decode_sized,
    read_path,
)
from visionnet.workers.vectorstore.staging import StagedChunk


def _returns(call: Callable[[], Any]) -> Any:
    """``call()`` in a thread: a read that blocks (a FIFO) fails the test instead of
    hanging it. A hang guard, not a timing threshold."""
    out: list[Any] = []
    worker = threading.Thread(target=lambda: out.append(call()), daemon=True)
    worker.start()
    worker.join(60)
    assert out, "the read blocked"
    return out[0]


def test_a_fifo_named_jpg_is_an_error_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "x.jpg"
    os.mkfifo(fifo)
    out = _returns(lambda: read_path(str(fifo), [tmp_path], 1 << 20))
    assert out == FileError(str(fifo), "not a regular file")


def test_a_socket_named_jpg_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "s.jpg"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        out = _returns(lambda: read_path(str(path), [tmp_path], 1 << 20))
    assert out == FileError(str(path), "not a regular file")


def test_a_character_device_is_an_error(tmp_path: Path) -> None:
    link = tmp_path / "zero.jpg"
    link.symlink_to("/dev/zero")
    # Refused by the roots first; with /dev allowed, by its type (it would read forever).
    refused = read_path(str(link), [tmp_path], 1 << 20)
    assert isinstance(refused, FileError) and "outside the allowed roots" in refused.error
    out = _returns(lambda: read_path(str(link), [tmp_path, Path("/dev")], 1 << 20))
    assert out == FileError(str(link), "not a regular file")


def test_the_size_cap_is_checked_before_reading(tmp_path: Path) -> None:
    sparse = tmp_path / "huge.jpg"
    with sparse.open("wb") as f:
        f.truncate(4 * 1024**3)  # 4 GB of holes: never read
    out = read_path(str(sparse), [tmp_path], 1 << 20)
    assert isinstance(out, FileError)
    assert out.error == (
        f"file is larger than jobs.max_file_bytes ({4 * 1024**3} > {1 << 20} bytes)"
    )
    exact = tmp_path / "exact.png"
    exact.write_bytes(b"x" * 100)
    assert read_path(str(exact), [tmp_path], 100) == RawFile(str(exact), b"x" * 100)
    over = read_path(str(exact), [tmp_path], 99)
    assert isinstance(over, FileError) and "larger than" in over.error


def test_the_size_cap_holds_while_reading() -> None:
    # A /proc file says 0 bytes and reads more, like a file growing after fstat.
    status = "/proc/self/status"
    assert os.stat(status).st_size == 0
    out = read_path(status, [Path("/proc")], 16)
    assert isinstance(out, FileError)
    assert out.error == "file is larger than jobs.max_file_bytes (17 > 16 bytes)"


def test_names_in_text_form_are_opened_by_their_bytes(tmp_path: Path) -> None:
    data = image_bytes(3)
    names = [b"\xff\xfe.png", b"back\\slash.png", "été.png".encode()]
    for name in names:
        os_path = os.fsdecode(bytes(tmp_path) + b"/" + name)
        Path(os_path).write_bytes(data)
        text = to_text(os_path)
        text.encode("utf-8")
        assert read_path(text, [tmp_path], 1 << 20) == RawFile(text, data)
    gone = str(tmp_path / "nope.png")
    assert read_path(gone, [tmp_path], 1 << 20) == FileError(
        gone, "cannot read file: No such file or directory"
    )


def test_corrupt_exif_is_the_files_error_not_an_exception() -> None:
    for data in exif_breakers(3):
        out = decode_sized(RawFile("/p/bad.jpg", data))
        assert isinstance(out, FileError), out
        assert out.error.startswith("corrupt image: error: "), out.error  # struct.error
        assert "Traceback" not in out.error and "/site-packages/" not in out.error


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_format_decodes(fmt: str) -> None:
    out = decode_sized(RawFile(f"x{FORMATS[fmt]}", encoded(5, fmt)), draft=16)
    assert not isinstance(out, FileError), out
    image, size = out
    assert image.mode == "RGB"
    assert size == (48, 40) or fmt == "ICO"  # an icon keeps its own square sizes


def _reader(pool: ThreadPoolExecutor, root: Path, prepare: Any) -> ChunkReader:
    return ChunkReader(pool, [root], 1 << 20, 32, prepare)


def test_a_batch_whose_preprocessing_raises_fails_only_its_bad_picture(tmp_path: Path) -> None:
    def prepare(images: Sequence[Image.Image]) -> list[Any]:
        if any(im.size == (1, 1) for im in images):
            raise RuntimeError("the processor choked")  # not an out-of-memory
        return [np.asarray(im) for im in images]

    tiny = Image.new("RGB", (1, 1))
    paths = []
    for i in range(3):
        path = tmp_path / f"{i}.png"
        path.write_bytes(image_bytes(i))
        paths.append(str(path))
    bad = tmp_path / "tiny.png"
    tiny.save(bad)
    paths.insert(1, str(bad))
    with ThreadPoolExecutor(2) as pool:
        reader = _reader(pool, tmp_path, prepare)
        read = reader.read(paths)
        assert not read.errors and len(read.fresh) == 4
        batch = reader.decode_batch(list(read.fresh.items()))
    assert [p.raw.name for p in batch.pictures] == [paths[0], paths[2], paths[3]]
    assert batch.errors == [
        FileError(str(bad), "cannot preprocess: RuntimeError: the processor choked")
    ]
    assert [im.size for im in batch.prepared] == [(48, 40)] * 3  # the pass preprocesses


def test_the_reader_keeps_going_past_every_kind_of_bad_file(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    good.write_bytes(image_bytes(9))
    (tmp_path / "exif.jpg").write_bytes(exif_breakers(1)[0])
    (tmp_path / "trunc.png").write_bytes(image_bytes(9)[:100])
    (tmp_path / "empty.jpg").write_bytes(b"")
    os.mkfifo(tmp_path / "fifo.jpg")
    names = ["good.png", "exif.jpg", "trunc.png", "empty.jpg", "fifo.jpg", "gone.jpg"]
    paths = [str(tmp_path / n) for n in names]
    with ThreadPoolExecutor(2) as pool:
        reader = _reader(pool, tmp_path, lambda images: list(images))
        read = _returns(lambda: reader.read(paths))
        batches = list(reader.decode_ahead([list(read.fresh.items())], lanes=1))
    (batch, _waited), *rest = batches
    assert not rest
    assert [p.raw.name for p in batch.pictures] == [str(good)]
    errors = {Path(e.name).name: e.error for e in [*read.errors, *batch.errors]}
    assert set(errors) == set(names) - {"good.png"}
    assert errors["fifo.jpg"] == "not a regular file"
    assert errors["empty.jpg"] == "not an image format we read"
    assert errors["gone.jpg"].startswith("cannot read file: ")


class _Embedder:
    """Vectors that say which picture they came from: its width."""

    def embed(self, prepared: list[Image.Image]) -> np.ndarray:
        return np.array([[float(im.size[0])] for im in prepared], dtype=np.float32)


def test_the_mapper_keeps_rows_in_batch_order_across_lanes() -> None:
    batches = [[Image.new("RGB", (w, 2)) for w in range(b * 3 + 1, b * 3 + 4)] for b in range(5)]
    with ThreadPoolExecutor(2) as pool:
        mapper = ChunkMapper(_Embedder(), None, False, pool, lanes=2)
        for batch in batches:
            mapper.submit(batch, batch)
        mapped = mapper.finish()
    assert mapped.matrix()[:, 0].tolist() == [float(w) for w in range(1, 16)]
    assert mapped.labels == [] and mapped.embed_s >= 0


def test_the_sink_commits_directly_without_a_writer_task() -> None:
    committed: list[list[StagedChunk]] = []
    chunk = StagedChunk(
        job_id="j",
        chunk_no=1,
        collection="c",
        ids=[],
        paths=[],
        sizes=[],
        vectors=np.zeros((0, 0), dtype=np.float32),
        model="m",
        skipped=0,
        errors=[],
    )
    sink = ChunkSink(
        direct=True,
        commit=committed.append,
        staging=None,  # type: ignore[arg-type]  # never touched on the direct path
        max_staged=1,
        still_active=lambda: True,
        max_wait_s=1.0,
    )
    assert sink.deliver(chunk) is False
    assert committed == [[chunk]]
