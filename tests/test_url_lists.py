"""URL lists as index sources (issue 27), end to end on the session stack.

A local HTTP server on loopback (allow-listed in the stack's settings:
``sources.allowed_networks = ["127.0.0.1/32"]``, a 2 s timeout, one retry, a
200,000-byte cap; tests/conftest.py) serves pictures and misbehaviours, and
counts the requests each path got. Seeds 27000-27199 are this file's.
"""

from __future__ import annotations

import hashlib
import io
import signal
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests
from PIL import Image

from tests.conftest import Stack
from tests.helpers import counts, image_bytes, submit, wait_job

FORMATS = {
    "png": ("PNG", "image/png"),
    "jpg": ("JPEG", "image/jpeg"),
    "webp": ("WEBP", "image/webp"),
    "gif": ("GIF", "image/gif"),
}


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.flaky_fails = True  # /flaky: 500 while set
        self.slow_s = 5.0  # /slow: past the stack's 2 s timeout while this long
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that give up (a timeout, the cap) are the point

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.server_address[1]}{path}"


def picture(seed: int, ext: str) -> bytes:
    return image_bytes(seed, FORMATS[ext][0])


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        srv, path = self.server, self.path
        with srv.lock:
            srv.requests[path] += 1
            seen = srv.requests[path]
        step = path.strip("/").split("/")
        seed = int(step[-1].split(".")[0]) if step[-1][:1].isdigit() else 0
        if step[0] == "img":  # /img/SEED.EXT
            ext = step[-1].rsplit(".", 1)[1]
            self._send(200, picture(seed, ext), FORMATS[ext][1])
        elif step[0] == "wrongtype":  # a good JPEG said to be HTML
            self._send(200, picture(seed, "jpg"), "text/html")
        elif step[0] == "delay":  # a picture after 0.2 s
            time.sleep(0.2)
            self._send(200, picture(seed, "png"), "image/png")
        elif step[0] == "flaky":
            if srv.flaky_fails:
                self._send(500, b"broken", "text/plain")
            else:
                self._send(200, picture(seed, "png"), "image/png")
        elif step[0] == "busy":  # 429 with Retry-After once, then the picture
            if seen == 1:
                self._send(429, b"later", "text/plain", {"Retry-After": "1"})
            else:
                self._send(200, picture(seed, "png"), "image/png")
        elif step[0] == "slow":
            time.sleep(srv.slow_s)
            self._send(200, picture(seed, "png"), "image/png")
        elif step[0] == "big":
            self._send(200, b"\xff\xd8" + b"\0" * 300_000, "image/jpeg")
        elif step[0] == "text":
            self._send(200, b"hello, not a picture", "image/jpeg")
        elif step[0] == "loop":
            other = "b" if step[-1] == "a" else "a"
            self._send(302, b"", "text/plain", {"Location": f"/loop/{other}"})
        elif step[0] == "to":  # /to/HOST: a redirect to that address
            self._send(302, b"", "text/plain", {"Location": f"http://{step[1]}/img/1.png"})
        else:
            self._send(404, b"not here", "text/plain")

    def _send(
        self, code: int, body: bytes, ctype: str, extra: dict[str, str] | None = None
    ) -> None:
        try:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (extra or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the client gave up (a timeout, the cap)


@pytest.fixture(scope="module")
def server() -> Any:
    srv = Server()
    yield srv
    srv.shutdown()
    srv.server_close()


def errors_by_url(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["path"]: e for e in job["result"]["errors"]}


def test_a_url_list_is_indexed_with_each_urls_outcome_and_retry_reruns_the_retryable(
    stack: Stack, server: Server
) -> None:
    good = {server.url(f"/img/{27000 + i}.{ext}"): (27000 + i, ext) for i, ext in
            enumerate(("png", "jpg", "webp", "gif"))}  # fmt: skip
    wrong_type = server.url("/wrongtype/27010.jpg")
    busy = server.url("/busy/27011.png")
    flaky = [server.url("/flaky/27012.png"), server.url("/flaky/27013.png")]
    slow = server.url("/slow/27014.png")
    permanent = {
        server.url("/missing/27015.png"): "HTTP 404",
        server.url("/big"): "body over 200000 bytes",
        server.url("/text"): "not an image",
        server.url("/loop/a"): "redirect",
        server.url("/to/169.254.169.254"): "169.254.169.254",
        server.url("/to/127.0.0.2"): "127.0.0.2",
        "ftp://example.com/a.png": "invalid URL",
        "not a url": "invalid URL",
    }
    retryable = [*flaky, slow]
    lines = [
        "id,url,caption",
        *(f"g{i},{u},good {i}" for i, u in enumerate(good)),
        f"w,{wrong_type},",
        f"b,{busy},",
        *(f"f{i},{u}," for i, u in enumerate(flaky)),
        f"s,{slow},",
        *(f"p{i},{u}," for i, u in enumerate(permanent)),
        f"dup,{next(iter(good))},listed twice",
    ]
    files = {"url_list": ("list.csv", "\n".join(lines).encode(), "text/csv")}
    job = wait_job(
        stack.base,
        submit(stack.base, "index", data={"collection": "url_list"}, files=files),
        timeout=180,
    )
    assert job["state"] == "succeeded", job
    result = job["result"]
    total = len(good) + 2 + len(retryable) + len(permanent) + 1
    assert (result["total"], result["indexed"], result["skipped"]) == (total, 6, 1), result
    failed = len(retryable) + len(permanent)
    assert counts(job) == {"total": total, "done": total, "failed": failed}
    errors = errors_by_url(job)
    assert set(errors) == {*retryable, *permanent}
    for url in retryable:
        assert errors[url]["retryable"] is True, errors[url]
    assert "500" in errors[flaky[0]]["error"] and "time" in errors[slow]["error"]
    for url, words in permanent.items():
        assert errors[url]["retryable"] is False, errors[url]
        assert words in errors[url]["error"], errors[url]
    assert errors[flaky[1]]["id"] == "f1"  # the list's id comes back with the URL's error
    assert "download" in job["progress"]["stage_seconds"]
    # A refused address is never connected to; a 404 is asked once, a 500 twice (one retry).
    assert server.requests["/missing/27015.png"] == 1
    assert server.requests["/flaky/27012.png"] == 2
    assert server.requests["/busy/27011.png"] == 2  # 429, then after Retry-After the picture

    # The URL is the stored path and the id the content's hash; thumbnails come from the
    # worker's copy (the web never fetches: the server sees no further request).
    served_before = sum(server.requests.values())
    for url, (seed, ext) in good.items():
        image_id = hashlib.sha256(picture(seed, ext)).hexdigest()
        image = requests.get(f"{stack.base}/api/v1/images/{image_id}", timeout=10).json()
        assert image["path"] == url, image
        for size in (64, 256, 512):
            r = requests.get(f"{stack.base}/api/v1/images/{image_id}/thumbnail?size={size}",
                             timeout=10)  # fmt: skip
            assert r.status_code == 200 and r.headers["Content-Type"] == "image/jpeg", r.text
            assert max(Image.open(io.BytesIO(r.content)).size) == 48  # never enlarged
    assert sum(server.requests.values()) == served_before

    # The server recovers: the retry downloads only the retryable failures.
    server.flaky_fails, server.slow_s = False, 0.0
    before = server.requests.copy()
    r = requests.post(f"{stack.base}/api/v1/jobs/{job['id']}/retry", timeout=10)
    assert r.status_code == 202, r.text
    accepted = r.json()
    assert accepted["retried"] == len(retryable)
    assert {e["path"] for e in accepted["not_retried"]} == set(permanent)
    second = wait_job(stack.base, accepted["job_id"], timeout=120)
    assert second["state"] == "succeeded", second
    assert (second["result"]["indexed"], second["result"]["failed"]) == (len(retryable), 0)
    asked = server.requests - before
    assert asked == Counter({"/flaky/27012.png": 1, "/flaky/27013.png": 1, "/slow/27014.png": 1})


def test_a_parquet_list_by_path_and_lists_refused_at_submit(stack: Stack, server: Server) -> None:
    urls = [server.url(f"/img/{27020 + i}.png") for i in range(3)]
    listed = stack.root / "urls.parquet"
    pq.write_table(pa.table({"url": urls, "id": [1, 2, 3]}), listed)
    body = {"source": {"url_list": str(listed)}, "collection": "url_list_parquet"}
    job = wait_job(stack.base, submit(stack.base, "index", json=body))
    assert job["state"] == "succeeded", job
    assert (job["result"]["indexed"], job["result"]["failed"]) == (3, 0), job

    def refused(**kw: Any) -> str:
        r = requests.post(f"{stack.base}/api/v1/index", timeout=30, **kw)
        assert r.status_code == 400, r.text
        return str(r.json()["message"])

    def upload(name: str, data: bytes) -> dict[str, Any]:
        return {"data": {"collection": "url_list_bad"}, "files": {"url_list": (name, data)}}

    assert "no 'url' column" in refused(**upload("l.csv", b"name,link\na,http://x/y.png\n"))
    over = b"\n".join(b"http://127.0.0.1/%d.png" % i for i in range(501))  # cap: 500 here
    assert "more than 500" in refused(**upload("l.txt", over))
    assert "no URLs" in refused(**upload("l.txt", b"# only a comment\n\n"))
    assert "binary" in refused(**upload("l.bin", b"\x00\x01\x02"))
    assert "Parquet" in refused(**upload("l.parquet", b"not parquet"))
    neither = {"data": {"collection": "url_list_bad"}, "files": {"other": ("x", b"x")}}
    assert "either archive or url_list" in refused(**neither)
    # A text list's bad lines are the URLs' errors, not the list's.
    bad_text = stack.root / "bad.csv"
    bad_text.write_text("url\n")
    assert "no URLs" in refused(json={"source": {"url_list": str(bad_text)}})
    r = requests.post(f"{stack.base}/api/v1/index", timeout=30,
                      json={"source": {"url_list": str(stack.outside)}})  # fmt: skip
    assert r.status_code == 403, r.text


def _pool_child(stack: Stack, role: str) -> psutil.Process:
    """The Celery pool process of this stack's ``visionnet worker <role>``."""
    for p in psutil.process_iter():
        try:
            cmd, parent = p.cmdline(), p.parent()
            if f"worker {role}" not in " ".join(cmd) or parent is None or parent.cmdline() != cmd:
                continue
            if p.environ().get("VISIONNET_DATA_DIR") == str(stack.data):
                return p
        except psutil.Error:
            continue
    raise AssertionError(f"no pool process for worker {role}")


def test_a_killed_worker_mid_list_still_gives_exact_counts(stack: Stack, server: Server) -> None:
    urls = [server.url(f"/delay/{27100 + i}.png") for i in range(48)]  # three chunks of 16
    files = {"url_list": ("kill.txt", "\n".join(urls).encode(), "text/plain")}
    job_id = submit(stack.base, "index", data={"collection": "url_list_kill"}, files=files)
    deadline = time.monotonic() + 120
    while True:
        job = requests.get(f"{stack.base}/api/v1/jobs/{job_id}", timeout=10).json()
        if job["progress"]["done"] >= 16 or job["state"] not in ("queued", "running"):
            break
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
    assert job["state"] == "running", job  # the kill lands mid-list
    victim = _pool_child(stack, "models")
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    job = wait_job(stack.base, job_id, timeout=180)
    assert job["state"] == "succeeded", job
    result = job["result"]
    assert (result["total"], result["indexed"], result["skipped"], result["failed"]) == (
        48, 48, 0, 0)  # fmt: skip
    assert all(server.requests[f"/delay/{27100 + i}.png"] >= 1 for i in range(48))
    assert Path(stack.data / "urllists" / f"{job_id}.tsv").exists() is False


def test_list_formats_and_a_planner_that_resumes_from_its_offset(tmp_path: Path) -> None:
    """Pure: formats by magic, name and header; invalid URLs named; steps from an offset."""
    from visionnet.core.urllists import UrlListError, check_list, url_problem
    from visionnet.workers.model_worker.url_plan import prepare, read_step

    text = tmp_path / "list"
    text.write_text("# made by hand\n\nhttp://a/1.png\n  https://b/2.jpg  \nftp://c/3.png\n")
    headed = tmp_path / "export"  # no extension: a header naming url makes it CSV
    headed.write_text('caption,url\n"a, b",http://a/1.png\n')
    assert check_list(text, 10) == ("text", 3)
    assert check_list(headed, 10) == ("csv", 1)
    with pytest.raises(UrlListError, match="more than 2"):
        check_list(text, 2)
    assert url_problem("http://a/1.png") is None
    for bad in ("ftp://c/3.png", "http:///x", "http://a b/", "http://a:99999/", "h" * 3000):
        assert (url_problem(bad) or "").startswith("invalid URL"), bad

    normalised = tmp_path / "n.tsv"
    assert prepare(text, normalised, 10) == 3
    first = read_step(normalised, 0, chunk_size=2, chunks=1)
    assert [[e.url for e in c] for c in first.chunks] == [["http://a/1.png", "https://b/2.jpg"]]
    assert first.next_offset is not None
    # A restarted step reads from the recorded offset: the same chunk, not the list again.
    text.unlink()
    assert prepare(text, normalised, 10) == 3
    rest = read_step(normalised, first.next_offset, chunk_size=2, chunks=5)
    assert [[e.url for e in c] for c in rest.chunks] == [["ftp://c/3.png"]]
    assert rest.next_offset is None
