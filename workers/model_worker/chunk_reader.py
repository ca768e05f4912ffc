"""An index chunk's reader: its files read, hashed, decoded and preprocessed, in the
reader threads, each file inside the per-file guard (``reader.guard``).

What leaves here is either a picture ready for the model or that file's
``FileError``: a corrupt, odd or vanished file never raises out of the reader,
so one file cannot fail the chunk. The decode of batch n+1 runs while the model
runs batch n (``decode_ahead``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from PIL.Image import Image

from visionnet.workers.model_worker.reader import FileError, RawFile, decode_sized, guard, read_path

# The model's batch preparation (``ImageModel.prepare_ahead``): pictures in, the
# pass's input out.
Prepare = Callable[[Sequence[Image]], Any]


@dataclass(frozen=True)
class ReadChunk:
    """The chunk's files read: one entry per distinct content, and the files that failed."""

    fresh: dict[str, RawFile]
    errors: list[FileError]
    hash_s: float


@dataclass(frozen=True)
class Picture:
    content_id: str
    raw: RawFile
    image: Image
    width: int  # the full upright size (a drafted decode is smaller)
    height: int


@dataclass
class DecodedBatch:
    """One batch decoded and preprocessed; ``pictures`` are in ``prepared``'s order."""

    pictures: list[Picture] = field(default_factory=list)
    errors: list[FileError] = field(default_factory=list)
    prepared: Any = None
    decode_s: float = 0.0
    preprocess_s: float = 0.0


class ChunkReader:
    """Reads an index chunk's files in ``pool``; every file step guarded."""

    def __init__(
        self,
        pool: Executor,
        roots: list[Path],
        max_bytes: int,
        draft: int | None,
        prepare: Prepare,
    ) -> None:
        self.pool = pool
        self.roots = roots
        self.max_bytes = max_bytes
        self.draft = draft
        self.prepare = prepare

    def read(self, paths: list[str]) -> ReadChunk:
        """Every file read and hashed (hashlib releases the GIL); a copy of a file
        within the chunk is kept once."""
        fresh: dict[str, RawFile] = {}
        errors: list[FileError] = []
        hash_s = 0.0
        for raw, content_id, seconds in self.pool.map(self._read_and_hash, paths):
            hash_s += seconds
            if isinstance(raw, FileError):
                errors.append(raw)
            else:
                fresh.setdefault(content_id, raw)
        return ReadChunk(fresh, errors, hash_s)

    def _read_and_hash(self, path: str) -> tuple[RawFile | FileError, str, float]:
        raw = read_path(path, self.roots, self.max_bytes)
        if isinstance(raw, FileError):
            return raw, "", 0.0
        start = time.perf_counter()
        content_id = raw.content_id
        return raw, content_id, time.perf_counter() - start

    def decode_batch(self, batch: Sequence[tuple[str, RawFile]]) -> DecodedBatch:
        """In a reader thread: the batch decoded and preprocessed, and the seconds of each."""
        start = time.perf_counter()
        out = DecodedBatch()
        for content_id, raw in batch:
            decoded = decode_sized(raw, self.draft)
            if isinstance(decoded, FileError):
                out.errors.append(decoded)
            else:
                image, (width, height) = decoded
                out.pictures.append(Picture(content_id, raw, image, width, height))
        decoded_at = time.perf_counter()
        out.decode_s = decoded_at - start
        out.prepared = self._prepare(out)
        out.preprocess_s = time.perf_counter() - decoded_at
        return out

    def _prepare(self, out: DecodedBatch) -> Any:
        """The batch's preprocessing; if it raises, each picture alone, so only the
        pictures whose own preprocessing fails drop out (as their files' errors)."""
        images = [p.image for p in out.pictures]
        whole = guard("", lambda: self.prepare(images), what="cannot preprocess")
        if not isinstance(whole, FileError):
            return whole
        kept: list[Picture] = []
        for picture in out.pictures:
            one = partial(self.prepare, [picture.image])
            alone = guard(picture.raw.name, one, what="cannot preprocess")
            if isinstance(alone, FileError):
                out.errors.append(alone)
            else:
                kept.append(picture)
        out.pictures = kept
        # The survivors as plain pictures: the pass preprocesses them itself.
        return [p.image for p in kept]

    def decode_ahead(
        self, batches: list[list[tuple[str, RawFile]]], lanes: int
    ) -> Iterator[tuple[DecodedBatch, float]]:
        """Each batch decoded, in order, with the seconds waited for it: ``lanes + 1``
        batches are in the reader threads ahead of the one the model takes."""
        ahead: list[Future[DecodedBatch]] = [
            self.pool.submit(self.decode_batch, batch) for batch in batches[: lanes + 1]
        ]
        for n in range(len(batches)):
            start = time.perf_counter()
            done = ahead[n].result()
            if n + lanes + 1 < len(batches):
                ahead.append(self.pool.submit(self.decode_batch, batches[n + lanes + 1]))
            yield done, time.perf_counter() - start
