"""URL lists, the third source of an index job: text, CSV or Parquet, read as a stream.

Shared by the web (which checks a list at submit, so a bad one is a 400 before
anything is queued) and the model worker's planner (which reads it once into
its normalised form). Formats:

- text: one URL per line; blank lines and lines starting with ``#`` are skipped;
- CSV: a header with a ``url`` column, optional ``id`` and ``caption`` columns;
- Parquet: the same columns (found by the file's ``PAR1`` magic, not its name).

A list is refused whole (``UrlListError``) when it cannot be read as any of
these, has no ``url`` column, or holds more than the cap. A single URL that is
not one we fetch (not http/https, too long, no host, spaces in it) is not the
list's fault: it becomes that URL's error in the job (``url_problem``).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

# Longest URL fetched; longer ones are that URL's error (browsers and servers cap near here).
MAX_URL_CHARS = 2048
ListFormat = Literal["text", "csv", "parquet"]
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_BAD_CHARS = re.compile(r"[\x00-\x20\x7f\\]")
# CSV fields may be long (captions); the csv module's default cap is 128 KiB.
csv.field_size_limit(16 * 1024 * 1024)


class UrlListError(ValueError):
    """The list is refused whole; the message says why, in words."""


@dataclass(frozen=True)
class UrlEntry:
    url: str
    id: str | None = None
    caption: str | None = None


def is_url_path(path: str) -> bool:
    """A stored path that is a URL (an image indexed from a URL list), not a file."""
    return path.startswith(("http://", "https://"))


def url_problem(url: str) -> str | None:
    """Why ``url`` is not fetched (that URL's error), or None."""
    if len(url) > MAX_URL_CHARS:
        return f"invalid URL: longer than {MAX_URL_CHARS} characters"
    if _BAD_CHARS.search(url):
        return "invalid URL: spaces, control characters or backslashes in it"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a port that is not a number)
    except ValueError as exc:
        return f"invalid URL: {exc}"
    if parts.scheme.lower() not in ("http", "https"):
        return f"invalid URL: only http and https are fetched, not {parts.scheme or 'none'!r}"
    if not parts.hostname:
        return "invalid URL: no host"
    return None


def list_format(path: Path) -> ListFormat:
    """The list's format: Parquet by its magic bytes, else CSV by its ``.csv``/``.tsv``
    name or by a first line that is a header naming ``url``, else text."""
    with path.open("rb") as f:
        head = f.read(4096)
    if head.startswith(b"PAR1"):
        return "parquet"
    if path.suffix.lower() in (".parquet", ".pq"):
        raise UrlListError("not a Parquet file (no PAR1 magic)")
    if b"\x00" in head:
        raise UrlListError("not a text, CSV or Parquet list (binary data)")
    if path.suffix.lower() == ".csv":
        return "csv"
    for raw in head.decode("utf-8", errors="replace").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if _SCHEME.match(line):
            return "text"
        fields = [f.strip().strip('"').lower() for f in line.split(",")]
        return "csv" if "url" in fields else "text"
    return "text"


def iter_entries(path: Path, fmt: ListFormat | None = None) -> Iterator[UrlEntry]:
    """Every entry of the list, in order, read as a stream (never whole in memory)."""
    kind = fmt or list_format(path)
    try:
        if kind == "parquet":
            yield from _parquet_entries(path)
        elif kind == "csv":
            yield from _csv_entries(path)
        else:
            yield from _text_entries(path)
    except UnicodeDecodeError as exc:
        raise UrlListError(f"the list is not UTF-8 text: {exc.reason} at byte {exc.start}") from exc
    except csv.Error as exc:
        raise UrlListError(f"the CSV list cannot be parsed: {exc}") from exc


def _text_entries(path: Path) -> Iterator[UrlEntry]:
    with path.open(encoding="utf-8-sig", newline=None) as f:
        for raw in f:
            line = raw.strip()
            if line and not line.startswith("#"):
                yield UrlEntry(line)


def _column(names: list[str], wanted: str) -> int | None:
    lowered = [n.strip().lower() for n in names]
    return lowered.index(wanted) if wanted in lowered else None


def _csv_entries(path: Path) -> Iterator[UrlEntry]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        rows = csv.reader(f)
        header = next(rows, None)
        at = _column(header or [], "url")
        if at is None:
            raise UrlListError("the CSV list has no 'url' column in its header")
        id_at, caption_at = _column(header or [], "id"), _column(header or [], "caption")
        for row in rows:
            if not row or not any(cell.strip() for cell in row):
                continue
            url = row[at].strip() if at < len(row) else ""
            yield UrlEntry(url, _cell(row, id_at), _cell(row, caption_at))


def _cell(row: list[str], at: int | None) -> str | None:
    if at is None or at >= len(row):
        return None
    return row[at].strip() or None


def _parquet_entries(path: Path) -> Iterator[UrlEntry]:
    import pyarrow.parquet as pq  # only here: the web imports this module for every job

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError...
        raise UrlListError(f"the Parquet list cannot be read: {exc}") from exc
    names = pf.schema_arrow.names
    if _column(names, "url") is None:
        raise UrlListError("the Parquet list has no 'url' column")
    wanted = [names[i] for w in ("url", "id", "caption") if (i := _column(names, w)) is not None]
    try:
        for batch in pf.iter_batches(batch_size=8192, columns=wanted):
            cols = {n.strip().lower(): batch.column(n).to_pylist() for n in wanted}
            ids, captions = cols.get("id"), cols.get("caption")
            for i, url in enumerate(cols["url"]):
                yield UrlEntry(
                    "" if url is None else str(url).strip(),
                    None if ids is None or ids[i] is None else str(ids[i]),
                    None if captions is None or captions[i] is None else str(captions[i]),
                )
    except UrlListError:
        raise
    except Exception as exc:
        raise UrlListError(f"the Parquet list cannot be read: {exc}") from exc


def check_list(path: Path, max_urls: int) -> tuple[ListFormat, int]:
    """The list's format and entry count, or ``UrlListError``: empty, unreadable, no
    ``url`` column, or more than ``max_urls`` entries (``jobs.max_list_urls``)."""
    fmt = list_format(path)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            meta = pq.ParquetFile(path)
        except Exception as exc:
            raise UrlListError(f"the Parquet list cannot be read: {exc}") from exc
        if _column(meta.schema_arrow.names, "url") is None:
            raise UrlListError("the Parquet list has no 'url' column")
        count = meta.metadata.num_rows
    else:
        count = 0
        for _ in iter_entries(path, fmt):
            count += 1
            if count > max_urls:
                break
    if count > max_urls:
        raise UrlListError(f"the list holds more than {max_urls} URLs (jobs.max_list_urls)")
    if count == 0:
        raise UrlListError("the list holds no URLs")
    return fmt, count


def entry_line(entry: UrlEntry) -> str:
    """One entry as a line of the planner's normalised list (tab-separated; a URL that
    passed ``url_problem`` has no tab, the others are cleaned of tabs and newlines)."""
    return "\t".join(_flat(x) for x in (entry.url, entry.id or "", entry.caption or ""))


def parse_line(line: str) -> UrlEntry:
    url, ident, caption = [*line.rstrip("\n").split("\t"), "", ""][:3]
    return UrlEntry(url, ident or None, caption or None)


def _flat(text: str) -> str:
    return text.replace("\t", " ").replace("\n", " ").replace("\r", " ")
