"""Bad input gets a 4xx with a JSON body naming the problem, never a 500 or a leak.

What the web process refuses by itself is tested on the app alone (Flask's test
client, a private Redis, no worker); a job's per-file errors and the real HTTP
server's 413 on the live stack.
"""

from __future__ import annotations

import io
import json
import zlib
from typing import Any

from PIL import Image
from werkzeug.test import TestResponse

from tests.conftest import Stack
from tests.helpers import submit, wait_job, write_images
from tests.webapp import WebApp


def _post(web: WebApp, endpoint: str, **kw: Any) -> TestResponse:
    return web.client.post(f"/api/v1/{endpoint}", **kw)


def _body(r: TestResponse) -> dict[str, Any]:
    assert r.is_json, r.data[:300]
    body: dict[str, Any] = r.json  # type: ignore[assignment]
    return body


def test_nul_byte_and_empty_paths_are_400(web: WebApp) -> None:
    # The schema says: an absolute path without NUL bytes (pattern), so the
    # message names the field and the pattern.
    r = _post(web, "classify", json={"paths": [f"{web.root}/a\x00.png"]})
    assert r.status_code == 400 and "paths" in _body(r)["message"]
    r = _post(web, "index", json={"source": {"path": f"{web.root}\x00"}})
    assert r.status_code == 400 and "source.path" in _body(r)["message"]
    r = _post(web, "index", json={"source": {"path": "relative/dir"}})
    assert r.status_code == 400 and "source.path" in _body(r)["message"]
    r = _post(web, "index", json={"source": {"path": ""}})
    assert r.status_code == 400 and "path" in _body(r)["message"]
    r = _post(web, "embed", json={"paths": [""]})
    assert r.status_code == 400 and "paths" in _body(r)["message"]


def test_deeply_nested_json_is_400(web: WebApp) -> None:
    r = _post(web, "search", data=b"[" * 100_000, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and _body(r)["error"] == "bad_request"


def _huge_png(width: int, height: int) -> bytes:
    """A valid PNG header claiming width x height pixels: decoding it would need GBs."""
    out = io.BytesIO()
    Image.new("L", (1, 1)).save(out, format="PNG")
    data = out.getvalue()
    ihdr = data[8:33]
    body = b"IHDR" + width.to_bytes(4, "big") + height.to_bytes(4, "big") + ihdr[16:21]
    chunk = (13).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")
    return data[:8] + chunk + data[33:]


def test_decompression_bomb_upload_is_400(web: WebApp) -> None:
    bomb = _huge_png(20_000, 20_000)  # 400 megapixels
    r = _post(web, "classify", data={"files": (io.BytesIO(bomb), "bomb.png", "image/png")})
    assert r.status_code == 400
    assert "bomb.png" in _body(r)["message"] and "pixels" in _body(r)["message"]


def test_error_messages_name_no_internal_objects(web: WebApp) -> None:
    junk = (io.BytesIO(b"\xff\xd8 junk"), "junk.jpg", "image/jpeg")
    r = _post(web, "embed", data={"files": junk})
    assert r.status_code == 400
    message = _body(r)["message"]
    assert "junk.jpg" in message and "BytesIO" not in message and "0x" not in message


def test_405_says_which_methods_are_allowed(web: WebApp) -> None:
    r = web.client.get("/api/v1/embed")
    assert r.status_code == 405 and _body(r)["error"] == "method_not_allowed"
    assert "POST" in r.headers["Allow"]


def test_wrong_content_type_on_index_is_415(web: WebApp) -> None:
    r = _post(web, "index", data=b"path=/x", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415 and _body(r)["error"] == "unsupported_media_type"


def test_a_link_out_of_the_roots_inside_a_folder_is_a_per_file_error(stack: Stack) -> None:
    folder = stack.root / "with_escape"
    write_images(folder, range(800, 803))
    outside = write_images(stack.outside / "target", range(803, 804))[0]
    (folder / "escape.png").symlink_to(outside)
    job_id = submit(
        stack.base, "index", json={"source": {"path": str(folder)}, "collection": "escape"}
    )
    job = wait_job(stack.base, job_id, timeout=180)
    result = job["result"]
    assert (result["total"], result["indexed"], result["failed"]) == (4, 3, 1)
    (error,) = result["errors"]
    assert error["path"] == str(folder / "escape.png")
    assert "outside the allowed roots" in error["error"]


def test_an_oversized_upload_is_413_json_from_the_real_server(stack: Stack) -> None:
    """The limit is Flask's, so the answer is our JSON, not a server's plain-text page."""
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(stack.base)
    head = (
        "POST /api/v1/classify HTTP/1.1\r\n"
        f"Host: {url.netloc}\r\n"
        "Content-Type: multipart/form-data; boundary=x\r\n"
        "Content-Length: 999999999999\r\n"
        "Connection: close\r\n\r\n"
    )
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(head.encode())  # the body never comes: refused on its declared length
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    status, _, rest = reply.partition(b"\r\n")
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 413"), reply[:500]
    assert b"content-type: application/json" in headers.lower()
    assert json.loads(body)["error"] == "request_entity_too_large"


def test_paths_outside_the_roots_are_403_and_absent_ones_404(web: WebApp) -> None:
    r = _post(web, "index", json={"source": {"path": str(web.outside)}})
    assert r.status_code == 403 and _body(r)["error"] == "path_not_allowed"
    r = _post(web, "classify", json={"paths": [f"{web.root}/no-such-file.png"]})
    assert r.status_code == 404 and "does not exist" in _body(r)["message"]
