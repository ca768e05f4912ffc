"""Unpacking an uploaded zip or tar archive into a folder an index job then walks.

An archive is untrusted input. An entry is written only as a regular file or
directory at a relative path below the destination: absolute names, ``..``
components, symbolic and hard links, devices and FIFOs are refused one by one
(zip-slip and its tar cousins) and listed as the job's per-file errors; the
rest is indexed. A zip bomb is refused whole: the bytes actually written are
counted against ``jobs.archive_max_unpacked_bytes`` as they are written (a
zip's declared sizes are checked first, but not trusted), and the entry count
against ``jobs.archive_max_entries``.
"""

from __future__ import annotations

import shutil
import stat
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO

BLOCK = 1 << 20
REFUSED = "refused archive entry"


class ArchiveError(ValueError):
    """The archive is refused whole (not an archive, a bomb, too many entries)."""


@dataclass
class Unpacked:
    files: int = 0
    bytes: int = 0
    refused: list[dict[str, str]] = field(default_factory=list)


def _relative(name: str) -> PurePosixPath | str:
    """The entry's safe relative path, or why it is refused."""
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "an absolute path"
    if "\x00" in name:
        return "a NUL byte in its name"
    parts = [p for p in PurePosixPath(name.replace("\\", "/")).parts if p not in ("", ".")]
    if ".." in parts:
        return "a '..' path component"
    if not parts:
        return "an empty name"
    return PurePosixPath(*parts)


class _Budget:
    def __init__(self, max_bytes: int, max_entries: int) -> None:
        self.max_bytes, self.max_entries = max_bytes, max_entries
        self.written = self.entries = 0

    def too_many(self) -> str:
        return (
            f"the archive holds more than {self.max_entries} entries "
            "(jobs.archive_max_entries): refused"
        )

    def entry(self) -> None:
        self.entries += 1
        if self.entries > self.max_entries:
            raise ArchiveError(self.too_many())

    def copy(self, source: IO[bytes], target: Path) -> int:
        written = 0
        with target.open("wb") as out:
            while block := source.read(BLOCK):
                written += len(block)
                self.written += len(block)
                if self.written > self.max_bytes:
                    raise ArchiveError(
                        f"the archive unpacks to more than {self.max_bytes} bytes "
                        "(jobs.archive_max_unpacked_bytes): refused as a possible zip bomb"
                    )
                out.write(block)
        return written


def unpack(archive: Path, dest: Path, *, max_bytes: int, max_entries: int) -> Unpacked:
    """Unpack ``archive`` (zip, or tar with any compression) below ``dest``.

    On ArchiveError whatever was written is removed.
    """
    dest.mkdir(parents=True, exist_ok=True)
    budget = _Budget(max_bytes, max_entries)
    try:
        if zipfile.is_zipfile(archive):
            return _unpack_zip(archive, dest, budget)
        if tarfile.is_tarfile(archive):
            return _unpack_tar(archive, dest, budget)
    except ArchiveError:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        shutil.rmtree(dest, ignore_errors=True)
        raise ArchiveError(f"the archive cannot be read: {exc}") from exc
    shutil.rmtree(dest, ignore_errors=True)
    raise ArchiveError("not a zip or tar archive")


def _target(dest: Path, rel: PurePosixPath) -> Path:
    target = dest.joinpath(*rel.parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def _refuse(out: Unpacked, name: str, why: str) -> None:
    out.refused.append({"path": name, "error": f"{REFUSED}: {why}"})


def _unpack_zip(archive: Path, dest: Path, budget: _Budget) -> Unpacked:
    out = Unpacked()
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        if len(infos) > budget.max_entries:
            raise ArchiveError(budget.too_many())
        if sum(i.file_size for i in infos) > budget.max_bytes:
            raise ArchiveError(
                f"the archive declares more than {budget.max_bytes} unpacked bytes "
                "(jobs.archive_max_unpacked_bytes): refused as a possible zip bomb"
            )
        for info in infos:
            budget.entry()
            rel = _relative(info.filename)
            # Unix file type bits, when the zip was made on Unix (0: not said).
            kind = stat.S_IFMT(info.external_attr >> 16)
            if isinstance(rel, str):
                _refuse(out, info.filename, rel)
            elif kind == stat.S_IFLNK:
                _refuse(out, info.filename, "a symbolic link")
            elif kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                _refuse(out, info.filename, "not a regular file")
            elif info.is_dir():
                _target(dest, rel).mkdir(exist_ok=True)
            else:
                with zf.open(info) as source:
                    out.bytes += budget.copy(source, _target(dest, rel))
                out.files += 1
    return out


def _unpack_tar(archive: Path, dest: Path, budget: _Budget) -> Unpacked:
    out = Unpacked()
    # Streamed member by member ("r|*"): a tar is read once, never listed whole.
    with tarfile.open(archive, "r|*") as tf:
        for member in tf:
            budget.entry()
            rel = _relative(member.name)
            if isinstance(rel, str):
                _refuse(out, member.name, rel)
            elif member.issym() or member.islnk():
                _refuse(out, member.name, "a link")
            elif member.isdir():
                _target(dest, rel).mkdir(exist_ok=True)
            elif not member.isreg():
                _refuse(out, member.name, "a device, FIFO or other special file")
            else:
                source = tf.extractfile(member)
                if source is None:
                    _refuse(out, member.name, "unreadable")
                    continue
                out.bytes += budget.copy(source, _target(dest, rel))
                out.files += 1
    return out
