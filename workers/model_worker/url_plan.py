"""Planning an index job over a URL list: read once, then chunked a step at a time.

The first step reads the list (an upload, or a file under the allowed roots;
text, CSV or Parquet: ``core/urllists.py``) into one entry a line under the
data directory, written whole or not at all. Every step then reads the next
``jobs.plan_ahead_chunks`` chunks from the byte offset its message carries and
queues the next step behind them with the offset after them. So chunk n is
always the same URLs, a redelivered or restarted step goes on where the list
was without reading it again, and a killed worker's chunk comes back through
the usual redelivery (``index.py``), like a folder's.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from visionnet.core.urllists import UrlEntry, UrlListError, entry_line, iter_entries, parse_line

# Queue one chunk: its number, its URLs and their ids from the list ({} when none).
Enqueue = Callable[[int, list[str], dict[str, str]], None]


@dataclass(frozen=True)
class Step:
    chunks: list[list[UrlEntry]]
    next_offset: int | None  # None: the list ends with these chunks


def prepare(source: Path, target: Path, max_urls: int) -> int:
    """Read the list at ``source`` into ``target`` once; its entry count.

    ``UrlListError`` when it is refused whole (unreadable, no url column, over
    ``max_urls``). A target written already (a redelivered first step) is kept.
    """
    if target.is_file():
        with target.open("rb") as f:
            return sum(1 for _ in f)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.part")
    count = 0
    try:
        with tmp.open("w", encoding="utf-8", newline="\n") as out:
            for entry in iter_entries(source):
                count += 1
                if count > max_urls:
                    raise UrlListError(
                        f"the list holds more than {max_urls} URLs (jobs.max_list_urls)"
                    )
                out.write(entry_line(entry) + "\n")
        if count == 0:
            raise UrlListError("the list holds no URLs")
        os.replace(tmp, target)
    except OSError as exc:
        raise UrlListError(f"cannot read the URL list: {exc.strerror or exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return count


def read_step(target: Path, offset: int, chunk_size: int, chunks: int) -> Step:
    """Up to ``chunks`` chunks of ``chunk_size`` entries from byte ``offset``."""
    out: list[list[UrlEntry]] = []
    with target.open("rb") as f:
        f.seek(offset)
        while len(out) < chunks:
            chunk: list[UrlEntry] = []
            while len(chunk) < chunk_size and (line := f.readline()):
                chunk.append(parse_line(line.decode("utf-8")))
            if not chunk:
                return Step(out, None)
            out.append(chunk)
        after = f.tell()
        more = bool(f.readline())
    return Step(out, after if more else None)


def plan_step(step: Step, first_chunk: int, enqueue: Enqueue) -> int:
    """Queue the step's chunks, numbered from ``first_chunk``; the next chunk's number."""
    for n, chunk in enumerate(step.chunks):
        ids = {e.url: e.id for e in chunk if e.id is not None}
        enqueue(first_chunk + n, [e.url for e in chunk], ids)
    return first_chunk + len(step.chunks)
