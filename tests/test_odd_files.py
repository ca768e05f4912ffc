"""Real folders hold odd files: none fails, freezes or starves an index job.

The corpus is made here, never stored: good photos in every format the walk
picks up, mixed with EXIF corruptions found by fuzzing Pillow now, truncated
files of every format, names that are not UTF-8, a FIFO and a socket named
``*.jpg``, a 4 GB sparse file (over the default ``jobs.max_file_bytes``), an
empty file, a folder the worker cannot read, links out of the roots, link loops
and a dangling link. The workers run as root, whom permission bits do not stop,
so the unreadable folder is one whose path is longer than the kernel takes
(ENAMETOOLONG); a refused folder (PermissionError) is tested in test_walk.py.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import requests

from tests.conftest import Stack
from tests.helpers import sha256_file, submit, wait_job, write_images
from tests.odd_files import FORMATS, encoded, exif_breakers
from visionnet.core.pathtext import to_text

# The formats the walk picks up (jobs.extensions); ICO, PPM and TGA it skips.
WALKED = {"PNG", "GIF", "TIFF", "WEBP", "BMP", "JPEG", "AVIF", "JPEG2000", "HEIF"}


def _index(stack: Stack, folder: Path | str, collection: str) -> str:
    body = {"source": {"path": str(folder)}, "collection": collection}
    return submit(stack.base, "index", json=body)


def _ids_in(stack: Stack, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The catalog's entries for ``ids`` that exist."""
    out = {}
    for image_id in ids:
        r = requests.get(f"{stack.base}/api/v1/images/{image_id}", timeout=10)
        if r.status_code == 200:
            out[image_id] = r.json()
    return out


def test_every_format_is_indexed_and_skipped_files_are_counted(stack: Stack) -> None:
    folder = stack.root / "formats"
    folder.mkdir()
    written = []
    for seed, fmt in enumerate(sorted(FORMATS), start=12100):  # seeds no other test writes
        path = folder / f"pic{FORMATS[fmt]}"
        path.write_bytes(encoded(seed, fmt))
        written.append((fmt, path))
    for name in ("a.txt", "b.txt", "c.txt", "raw.cr2", "README"):
        (folder / name).write_bytes(b"not a picture")
    job = wait_job(stack.base, _index(stack, folder, "odd_formats"), timeout=300)
    assert job["state"] == "succeeded", job
    result = job["result"]
    assert (result["indexed"], result["failed"]) == (len(WALKED), 0), result
    assert result["skipped_by_extension"] == {
        ".txt": 3,
        ".cr2": 1,
        "(none)": 1,
        ".ico": 1,
        ".ppm": 1,
        ".tga": 1,
    }
    stored = _ids_in(stack, [sha256_file(p) for _fmt, p in written])
    assert {entry["path"] for entry in stored.values()} == {
        str(p) for fmt, p in written if fmt in WALKED
    }


def _too_long_folder(base: Path) -> Path:
    """Nested folders whose full path passes PATH_MAX (4096): the walk cannot open the
    deepest. Made through folder descriptors, which have no such limit."""
    base.mkdir()
    fd = os.open(base, os.O_RDONLY)
    parts = []
    try:
        for i in range(18):
            name = f"{i:02d}" + "d" * 240
            os.mkdir(name, dir_fd=fd)
            inner = os.open(name, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd, parts = inner, [*parts, name]
    finally:
        os.close(fd)
    # The first folder past the limit is the one the walk reports.
    path = str(base)
    for name in parts:
        path = f"{path}/{name}"
        if len(path.encode()) >= 4096:
            return Path(path)
    raise AssertionError("not deep enough")


def test_an_odd_files_corpus_ends_succeeded_with_every_odd_entry_explained(
    stack: Stack,
) -> None:
    folder = stack.root / "odd"
    good = write_images(folder, range(7200, 7206))
    odd: dict[str, str] = {}  # name -> the start of its expected error; "" = indexed or an error

    for i, data in enumerate(exif_breakers(3)):
        (folder / f"exif_{i}.jpg").write_bytes(data)
        odd[f"exif_{i}.jpg"] = "corrupt image: "
    for seed, fmt in enumerate(sorted(WALKED), start=7300):
        data = encoded(seed, fmt)
        (folder / f"trunc{FORMATS[fmt]}").write_bytes(data[: len(data) // 2])
        odd[f"trunc{FORMATS[fmt]}"] = ""
    not_utf8 = os.fsdecode(bytes(folder) + b"/\xff\xfe.png")
    Path(not_utf8).write_bytes(encoded(7400, "PNG"))
    backslash = folder / "back\\slash.png"
    backslash.write_bytes(encoded(7401, "PNG"))
    os.mkfifo(folder / "fifo.jpg")
    odd["fifo.jpg"] = "not a regular file"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(folder / "socket.jpg"))
    odd["socket.jpg"] = "not a regular file"
    with (folder / "huge.jpg").open("wb") as f:
        f.truncate(4 * 1024**3)  # sparse: 4 GB of holes, over the 200 MiB cap
    odd["huge.jpg"] = "file is larger than jobs.max_file_bytes"
    (folder / "empty.jpg").write_bytes(b"")
    odd["empty.jpg"] = "not an image format we read"
    outside = stack.outside / "outside.jpg"
    outside.write_bytes(encoded(7402, "JPEG"))
    (folder / "out.jpg").symlink_to(outside)
    odd["out.jpg"] = "path "
    (folder / "loop.jpg").symlink_to(folder / "loop.jpg")
    odd["loop.jpg"] = "cannot read file: "
    (folder / "dangling.jpg").symlink_to(folder / "nowhere.jpg")
    odd["dangling.jpg"] = "cannot read file: No such file or directory"
    (folder / "cycle").symlink_to(".")  # a folder link loop: not followed
    unreadable = _too_long_folder(folder / "deep")

    first = _index(stack, folder, "odd_files")
    # A second job behind it, on the same bulk queue: it must not wait for ever.
    later_folder = stack.root / "odd_after"
    later_paths = write_images(later_folder, range(7500, 7503))
    second = _index(stack, later_folder, "odd_after")
    try:
        job = wait_job(stack.base, first, timeout=600)
        later = wait_job(stack.base, second, timeout=600)
    finally:
        sock.close()

    assert job["state"] == "succeeded", job
    result = job["result"]
    errors = {e["path"]: e["error"] for e in result["errors"]}
    assert not result["errors_truncated"]
    # Every good photo is indexed, the non-UTF-8 one under its text form.
    stored = _ids_in(stack, [sha256_file(p) for p in [*good, Path(not_utf8), backslash]])
    text_path = to_text(not_utf8)
    assert text_path.endswith("/\\xff\\xfe.png")
    assert {e["path"] for e in stored.values()} == {
        *map(str, good),
        text_path,
        to_text(str(backslash)),
    }
    # Every odd entry is indexed or listed with its reason.
    for name, reason in odd.items():
        path = str(folder / name)
        if reason:
            assert errors.get(path, "").startswith(reason), (name, errors.get(path))
        else:
            assert path in errors or _ids_in(stack, [sha256_file(Path(path))]), name
    assert errors[to_text(str(unreadable))] == "cannot read folder: File name too long"
    assert set(errors) <= {str(folder / n) for n in odd} | {to_text(str(unreadable))}
    assert all("Traceback" not in e and "site-packages" not in e for e in errors.values())
    assert result["skipped_by_extension"] == {}
    assert result["failed"] == len(errors)
    assert result["total"] == result["indexed"] + result["skipped"] + result["failed"]

    # The job behind it ran to the end too.
    assert later["state"] == "succeeded" and later["result"]["indexed"] == len(later_paths)
    assert later["finished_at"] >= job["started_at"]

    # The non-UTF-8 name is found by search, has a thumbnail and goes by prefix.
    image_id = sha256_file(Path(not_utf8))
    body = {"image_id": image_id, "k": 50, "collection": "odd_files"}
    hits = wait_job(stack.base, submit(stack.base, "search", json=body))["result"]["hits"]
    assert text_path in {h["path"] for h in hits}
    thumb = requests.get(f"{stack.base}/api/v1/images/{image_id}/thumbnail", timeout=10)
    assert thumb.status_code == 200, thumb.text
    delete = {"collection": "odd_files", "path_prefix": f"{folder}/"}
    deleted = wait_job(stack.base, submit(stack.base, "delete", json=delete))
    assert deleted["state"] == "succeeded", deleted
    assert _ids_in(stack, [image_id]) == {}
