"""Archive uploads to POST /index: unpacked safely under the data directory, then indexed."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import requests
from flask import Flask, request
from PIL import Image

from tests.conftest import Stack
from tests.helpers import image_bytes, sha256_file, wait_job
from visionnet.config.settings import Settings
from visionnet.web.services import EXTENSION_KEY
from visionnet.web.spooling import SpoolingRequest, incoming_path, remove_spooled
from visionnet.web.uploads import save_archive_upload


def _upload(stack: Stack, name: str, data: bytes, collection: str) -> requests.Response:
    return requests.post(
        f"{stack.base}/api/v1/index",
        files={"archive": (name, data, "application/octet-stream")},
        data={"collection": collection},
        timeout=60,
    )


def _index(stack: Stack, name: str, data: bytes, collection: str) -> dict[str, Any]:
    r = _upload(stack, name, data, collection)
    assert r.status_code == 202, r.text
    return wait_job(stack.base, r.json()["job_id"], timeout=120)


def _zip(entries: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return buf.getvalue()


def _tar(entries: dict[str, bytes], special: Sequence[tarfile.TarInfo] = ()) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for info in special:
            tf.addfile(info)
    return buf.getvalue()


def test_zip_entries_that_escape_are_refused_and_the_rest_indexed(stack: Stack) -> None:
    good = {f"photos/img_{i}.png": image_bytes(8000 + i) for i in range(5)}
    bad = {"../escaped.png": image_bytes(8100), "/abs.png": image_bytes(8101)}
    links = {"photos/link.png": "/etc/passwd"}
    job = _index(stack, "set.zip", _zip({**good, **bad}, links), "zips")
    assert job["state"] == "succeeded", job
    result = job["result"]
    assert (result["total"], result["indexed"], result["failed"]) == (8, 5, 3), result["errors"]
    refused = {e["path"]: e["error"] for e in result["errors"]}
    assert set(refused) == {"../escaped.png", "/abs.png", "photos/link.png"}
    assert all(e.startswith("refused archive entry") for e in refused.values())
    assert "symbolic link" in refused["photos/link.png"]
    # The refused entries were written nowhere: not beside the data, not at /.
    assert not [p for p in stack.data.parent.rglob("*") if p.name in ("escaped.png", "abs.png")]
    assert not Path("/abs.png").exists()
    unpacked = stack.data / "archives" / job["id"]
    assert sorted(p.name for p in (unpacked / "photos").iterdir()) == sorted(
        Path(n).name for n in good
    )
    assert not (stack.data / "uploads" / f"{job['id']}.archive").exists()  # upload removed
    # Indexed from their unpacked paths: the image endpoint says where.
    first = unpacked / "photos" / "img_0.png"
    image = requests.get(f"{stack.base}/api/v1/images/{sha256_file(first)}", timeout=10).json()
    assert image["path"] == str(first)
    # Refused entries cannot be retried: nothing a retry could change.
    r = requests.post(f"{stack.base}/api/v1/jobs/{job['id']}/retry", timeout=10)
    assert r.status_code == 409


def test_tar_links_devices_and_dotdot_are_refused(stack: Stack) -> None:
    link = tarfile.TarInfo("pics/link.png")
    link.type, link.linkname = tarfile.SYMTYPE, "../../../../etc/passwd"
    hard = tarfile.TarInfo("pics/hard.png")
    hard.type, hard.linkname = tarfile.LNKTYPE, "pics/a.png"
    fifo = tarfile.TarInfo("pics/fifo")
    fifo.type = tarfile.FIFOTYPE
    entries = {"pics/a.png": image_bytes(8200), "pics/sub/b.png": image_bytes(8201)}
    entries["pics/../../c.png"] = image_bytes(8202)
    job = _index(stack, "set.tar.gz", _tar(entries, [link, hard, fifo]), "tars")
    assert job["state"] == "succeeded", job
    result = job["result"]
    assert (result["indexed"], result["failed"]) == (2, 4)
    assert {e["path"] for e in result["errors"]} == {
        "pics/link.png",
        "pics/hard.png",
        "pics/fifo",
        "pics/../../c.png",
    }
    unpacked = stack.data / "archives" / job["id"]
    found = sorted(str(p.relative_to(unpacked)) for p in unpacked.rglob("*") if p.is_file())
    assert found == ["pics/a.png", "pics/sub/b.png"]
    assert not any(p.is_symlink() for p in unpacked.rglob("*"))


def test_a_zip_bomb_is_refused_with_a_clear_error(stack: Stack) -> None:
    # 12 MiB of zeros, a few KiB packed: above the stack's 8 MiB unpacked limit.
    zipped = _zip({"zeros.bin": bytes(12 * 1024 * 1024), "a.png": image_bytes(8300)})
    assert len(zipped) < 64 * 1024
    job = _index(stack, "bomb.zip", zipped, "bombs")
    assert job["state"] == "failed"
    assert "zip bomb" in job["error"] and "archive_max_unpacked_bytes" in job["error"]
    assert not (stack.data / "archives" / job["id"]).exists()
    # A tar declares nothing up front: the bytes are counted as they are written.
    tarred = _tar({"a.png": image_bytes(8301), "zeros.bin": bytes(12 * 1024 * 1024)})
    job = _index(stack, "bomb.tar.gz", tarred, "bombs")
    assert job["state"] == "failed" and "zip bomb" in job["error"]
    assert not (stack.data / "archives" / job["id"]).exists()
    # Too many entries (the stack allows 500).
    many = _zip({f"e/{i}.txt": b"" for i in range(501)})
    job = _index(stack, "many.zip", many, "bombs")
    assert job["state"] == "failed" and "archive_max_entries" in job["error"]


def test_the_size_limit_answers_413_and_non_archives_400(stack: Stack) -> None:
    big = os.urandom(3 * 1024 * 1024)  # the stack allows 2 MiB archives
    r = _upload(stack, "big.zip", big, "limits")
    assert r.status_code == 413 and r.json()["error"]
    r = _upload(stack, "notes.zip", b"just some text, not an archive", "limits")
    assert r.status_code == 400 and "notes.zip" in r.json()["message"]
    uploads = stack.data / "uploads"
    assert not uploads.exists() or not any(uploads.iterdir())  # nothing left behind


def test_a_large_archive_is_moved_into_place_not_copied(stack: Stack) -> None:
    """A part over 500 KB spools to <data>/incoming (web/spooling.py), not /tmp, and the
    archive is moved from there: written once. Nothing stays in incoming."""
    images = {f"big/img_{seed}.png": image_bytes(seed) for seed in range(9100, 9130)}
    data = _tar({**images, "big/padding.bin": os.urandom(700 * 1024)})
    assert len(data) > 700 * 1024
    r = _upload(stack, "big.tar", data, "moved")
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    job = wait_job(stack.base, job_id, timeout=120)
    assert job["state"] == "succeeded", job
    assert job["result"]["indexed"] == 30
    assert list((stack.data / "incoming").iterdir()) == []


def test_a_spooled_part_is_moved_with_its_inode_and_a_small_one_copied(tmp_path: Path) -> None:
    """The request class and save_archive_upload together, on werkzeug's real parser."""
    app = Flask(__name__)
    app.request_class = SpoolingRequest
    settings = Settings(data_dir=tmp_path / "data")
    app.extensions[EXTENSION_KEY] = SimpleNamespace(settings=settings)
    big = _tar({"a/img.png": image_bytes(9200), "a/pad.bin": os.urandom(600 * 1024)})
    small = _tar({"a/img.png": image_bytes(9201)})
    for data, moved in ((big, True), (small, False)):
        body = {"archive": (io.BytesIO(data), "x.tar")}
        with app.test_request_context("/", method="POST", data=body):
            upload = request.files["archive"]
            spooled = getattr(upload.stream, "name", None)
            assert isinstance(spooled, str) == moved
            inode = os.stat(spooled).st_ino if moved else None
            target = tmp_path / f"saved-{moved}.archive"
            assert save_archive_upload(upload, target) == target
            assert target.read_bytes() == data
            if moved:
                assert Path(spooled).parent == incoming_path(settings)
                assert os.stat(target).st_ino == inode  # the same file: written once
            remove_spooled(request)
    assert list(incoming_path(settings).iterdir()) == []


def test_a_large_image_upload_spools_and_leaves_nothing_behind(stack: Stack) -> None:
    noise = Image.frombytes("RGB", (600, 600), os.urandom(600 * 600 * 3))
    buf = io.BytesIO()
    noise.save(buf, "PNG")
    assert buf.tell() > 500 * 1024  # over werkzeug's in-memory threshold
    files = [("files", ("noise.png", buf.getvalue(), "image/png"))]
    r = requests.post(f"{stack.base}/api/v1/classify", files=files, timeout=60)
    assert r.status_code == 202, r.text
    job = wait_job(stack.base, r.json()["job_id"])
    assert job["state"] == "succeeded", job
    assert job["result"]["images"][0]["name"] == "noise.png"
    assert list((stack.data / "incoming").iterdir()) == []
