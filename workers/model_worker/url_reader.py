"""An index chunk of URLs: downloaded in the chunk's reader stage, then read like files.

Where downloads run (issue 27 asked for the choice). They run here, in the
model worker's chunk reader stage, not on a queue of their own:

- A URL-list chunk is then a chunk like any other. It is planned, counted,
  redelivered after a killed worker, split when it kills its process and
  reported once by the same machinery as a folder's chunk; its URLs get the
  same per-file errors, and its ``stage_seconds`` gain a ``download`` stage
  beside ``read``, ``decode`` and ``embed``. A separate download queue would
  need its own resumption, its own counting and a place to hand the bytes
  over (Redis or shared disk) before the model saw them.
- Downloading is I/O bound: the ``Fetcher`` (``visionnet.workers.fetch``) has its
  own thread pool (``sources.download_threads`` in all, ``sources.per_host``
  per host), so one chunk has many downloads in flight while the reader
  threads hash what has arrived (and write its thumbnail) and the model
  waits. The bytes never leave the process that embeds them.
- What it costs: a chunk's downloads finish before its first batch is decoded,
  so the model idles while a chunk downloads (the chunk size bounds that).
  Measured in bench/url_list.py beside a folder job over the same images.

Each URL ends as one of: stored, skipped (its content is stored already) or an
error whose ``retryable`` says whether ``POST /jobs/<id>/retry`` runs it again:
a timeout, a lost connection, a 5xx or a 429 can change; a 404, a refused
address, a body over the cap, an invalid URL or bytes that are not an image
cannot. The URL is the stored path; the id stays the content hash.

Thumbnails: every downloaded image gets a JPEG at ``sources.thumbnail_size``
under the data directory (``core/thumbs.py``), where the web's thumbnail route
finds it, so the page never fetches from the web. ``sources.keep_downloads``
keeps the full bytes too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Protocol

from visionnet.core.thumbs import keep_download, write_thumbnail
from visionnet.core.urllists import url_problem
from visionnet.workers.fetch.outcome import Fetched, FetchError
from visionnet.workers.model_worker.chunk_reader import ReadChunk
from visionnet.workers.model_worker.reader import FileError, RawFile

log = logging.getLogger(__name__)


class Fetching(Protocol):
    """What the reader needs of ``visionnet.workers.fetch``'s Fetcher."""

    def fetch_many(self, urls: Iterable[str]) -> Iterator[tuple[str, Fetched | FetchError]]: ...


class UrlChunkReader:
    """Downloads a chunk's URLs and hashes them in ``pool``; thumbnails (and, if kept,
    the downloads) written under ``data`` by content id."""

    def __init__(
        self,
        fetcher: Fetching,
        pool: Executor,
        data: Path,
        thumbnail_size: int,
        keep_downloads: bool,
    ) -> None:
        self.fetcher = fetcher
        self.pool = pool
        self.data = data
        self.thumbnail_size = thumbnail_size
        self.keep_downloads = keep_downloads

    def read(self, urls: list[str]) -> tuple[ReadChunk, float]:
        """The chunk read (as ``ChunkReader.read`` gives it) and the downloads' seconds,
        summed over URLs (they overlap)."""
        failed: dict[str, FileError] = {}
        valid: list[str] = []
        for url in dict.fromkeys(urls):  # a URL twice in a chunk is downloaded once
            problem = url_problem(url)
            if problem is None:
                valid.append(url)
            else:
                failed[url] = FileError(url, problem, retryable=False)
        download_s = 0.0
        hashing: list[Future[tuple[RawFile, str, float]]] = []
        for url, got in self.fetcher.fetch_many(valid):
            if isinstance(got, FetchError):
                failed[url] = FileError(url, got.reason, retryable=got.retryable)
                continue
            download_s += got.seconds
            hashing.append(self.pool.submit(self._arrived, url, got.data))
        fresh: dict[str, RawFile] = {}
        hash_s = 0.0
        for future in hashing:
            raw, content_id, seconds = future.result()
            hash_s += seconds
            fresh.setdefault(content_id, raw)
        # A URL listed twice counts twice: failed twice, or stored once and skipped once.
        errors = [failed[url] for url in urls if url in failed]
        return ReadChunk(fresh, errors, hash_s), download_s

    def _arrived(self, url: str, data: bytes) -> tuple[RawFile, str, float]:
        """In a reader thread: hash one download, write its thumbnail (and keep it)."""
        start = time.perf_counter()
        raw = RawFile(url, data)
        content_id = raw.content_id
        hashed = time.perf_counter() - start
        try:
            write_thumbnail(self.data, content_id, data, self.thumbnail_size)
            if self.keep_downloads:
                keep_download(self.data, content_id, data)
        except Exception as exc:  # a thumbnail is a convenience: the decode stage decides
            log.info("no thumbnail of %s: %s: %s", url, type(exc).__name__, exc)
        return raw, content_id, hashed
