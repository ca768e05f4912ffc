"""Downloads through the SSRF guard (workers/fetch) against a real local HTTP server.

The server (tests/image_server.py) counts the connections and requests that
reached it, so "refused" means no packet left for the refused address, and
"retried" means the server saw the second request.
"""

from __future__ import annotations

import ipaddress
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.image_server import ImageServer
from visionnet.config.settings import SourceSettings
from visionnet.workers.fetch import Fetched, Fetcher, FetchError, guard
from visionnet.workers.fetch.retry import retry_after_s

LOOPBACK = ["127.0.0.1/32"]  # the server's exact address: 127.0.0.2 stays refused


def settings(**kw: Any) -> SourceSettings:
    base: dict[str, Any] = {
        "allowed_networks": LOOPBACK,
        "backoff_s": 0.01,
        "read_timeout_s": 5,
        "max_bytes": 100_000,
    }
    return SourceSettings(**{**base, **kw})


@pytest.fixture(scope="module")
def server() -> Iterator[ImageServer]:
    srv = ImageServer("127.0.0.1")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def fetcher() -> Iterator[Fetcher]:
    with Fetcher(settings()) as f:
        yield f


def failure(fetcher: Fetcher, url: str) -> FetchError:
    with pytest.raises(FetchError) as info:
        fetcher.fetch(url)
    return info.value


@pytest.mark.parametrize("ext", ["png", "jpg", "webp"])
def test_images_of_each_format(server: ImageServer, fetcher: Fetcher, ext: str) -> None:
    url = server.url(f"/img/a.{ext}")
    got = fetcher.fetch(url)
    assert got.data == server.pictures[ext]
    assert (got.url, got.final_url, got.attempts) == (url, url, 1)
    assert got.content_type == f"image/{'jpeg' if ext == 'jpg' else ext}"
    assert got.seconds > 0


def test_content_is_sniffed_not_taken_from_content_type(
    server: ImageServer, fetcher: Fetcher
) -> None:
    got = fetcher.fetch(server.url("/img/b.jpg?type=text/plain"))
    assert got.content_type == "text/plain" and got.data == server.pictures["jpg"]
    err = failure(fetcher, server.url("/html"))
    assert (err.reason, err.retryable, err.attempts) == ("not an image", False, 1)


def test_404_is_final_and_not_retried(server: ImageServer, fetcher: Fetcher) -> None:
    err = failure(fetcher, server.url("/status/404/once"))
    assert (err.reason, err.retryable, err.attempts) == ("HTTP 404", False, 1)
    assert server.requests["/status/404/once"] == 1


def test_500_then_200_is_retried(server: ImageServer, fetcher: Fetcher) -> None:
    got = fetcher.fetch(server.url("/fail/500/1/k1"))
    assert got.attempts == 2 and server.requests["/fail/500/1/k1"] == 2
    err = failure(fetcher, server.url("/status/503/always"))
    assert (err.reason, err.retryable, err.attempts) == ("HTTP 503", True, 4)  # 1 + retries
    assert server.requests["/status/503/always"] == 4


def test_429_waits_for_retry_after(server: ImageServer, fetcher: Fetcher) -> None:
    got = fetcher.fetch(server.url("/fail/429/1/k2?after=1"))
    first, second = server.times["/fail/429/1/k2"]
    assert got.attempts == 2 and second - first >= 0.95  # Event.wait(1.0), less clock grain


def test_retry_after_over_the_limit_fails_at_once(server: ImageServer) -> None:
    with Fetcher(settings(max_retry_after_s=10)) as f:
        err = failure(f, server.url("/fail/429/5/k3?after=120"))
    assert err.reason == "HTTP 429 (Retry-After 120 s, over 10 s)"
    assert err.retryable and err.attempts == 1 and server.requests["/fail/429/5/k3"] == 1


def test_retry_after_as_an_http_date() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_s("Thu, 01 Jan 2026 12:00:30 GMT", now) == 30
    assert retry_after_s("Thu, 01 Jan 2026 11:00:00 GMT", now) == 0
    assert retry_after_s("7", now) == 7
    assert retry_after_s("soon", now) is None and retry_after_s(None, now) is None


@pytest.mark.parametrize("part", ["body", "head"])
def test_a_trickling_response_hits_the_timeout(server: ImageServer, part: str) -> None:
    # A byte every 0.1 s resets any per-receive timeout; the attempt's deadline holds.
    with Fetcher(settings(read_timeout_s=1, retries=0)) as f:
        err = failure(f, server.url(f"/trickle/{part}"))
    assert (err.reason, err.retryable) == ("timed out after 1 s", True)
    wait_for(lambda: f"/trickle/{part}" in server.trickled)
    assert server.trickled[f"/trickle/{part}"] < 60  # the client hung up mid-trickle


def wait_for(condition: Callable[[], bool], limit: float = 10) -> None:
    end = time.monotonic() + limit
    while not condition() and time.monotonic() < end:
        time.sleep(0.05)


@pytest.mark.parametrize("which", ["announced", "unannounced"])
def test_a_body_over_the_cap(server: ImageServer, fetcher: Fetcher, which: str) -> None:
    err = failure(fetcher, server.url(f"/big/{which}"))
    assert (err.reason, err.retryable, err.attempts) == ("body over 100000 bytes", False, 1)


def test_redirects(server: ImageServer, fetcher: Fetcher) -> None:
    got = fetcher.fetch(server.url("/relative"))
    assert got.final_url == server.url("/img/a.png")
    target = server.url("/img/c.webp")
    got = fetcher.fetch(server.url(f"/redirect?to={target}"))
    assert got.final_url == target and got.data == server.pictures["webp"]
    err = failure(fetcher, server.url("/loop/k4/a"))
    assert (err.reason, err.retryable) == ("too many redirects (5)", False)
    assert server.requests["/loop/k4/a"] + server.requests["/loop/k4/b"] == 6


def _trap(host: str) -> ImageServer | None:
    try:
        return ImageServer(host)
    except OSError:  # no IPv6 loopback in this container
        return None


def test_a_redirect_to_a_refused_address_sends_nothing_there(
    server: ImageServer, fetcher: Fetcher
) -> None:
    traps = [t for t in (_trap("127.0.0.2"), _trap("::1")) if t is not None]
    try:
        targets = [(t.url("/img/a.png"), str(t.server_address[0])) for t in traps]
        targets.append(("http://169.254.169.254/latest/meta-data/", "169.254.169.254"))
        for url, address in targets:
            err = failure(fetcher, server.url(f"/redirect?to={url}"))
            assert err.reason.startswith(f"refused address {address} (") and not err.retryable
        assert [t.connections for t in traps] == [0] * len(traps)
        # The same traps are reachable once allowed: the zero above is the guard's.
        nets = LOOPBACK + [str(ipaddress.ip_network(t.server_address[0])) for t in traps]
        with Fetcher(settings(allowed_networks=nets)) as open_fetcher:
            for t in traps:
                open_fetcher.fetch(server.url(f"/redirect?to={t.url('/img/a.png')}"))
        assert [t.connections for t in traps] == [1] * len(traps)
    finally:
        for t in traps:
            t.stop()


def test_the_guard_refuses_loopback_without_the_allow_list(server: ImageServer) -> None:
    before = server.connections
    port = server.port
    cases = {
        server.url("/img/a.png"): "refused address 127.0.0.1 (loopback)",
        f"http://localhost:{port}/img/a.png": "(loopback) for localhost",
        f"http://[::ffff:127.0.0.1]:{port}/img/a.png": "(loopback, as 127.0.0.1)",
        f"http://2130706433:{port}/img/a.png": "refused address 127.0.0.1 (loopback) for",
        f"http://0.0.0.0:{port}/img/a.png": "refused address 0.0.0.0 (unspecified)",
        "http://169.254.169.254/latest/meta-data/": "(cloud metadata)",
        "http://10.0.0.1/a.png": "refused address 10.0.0.1 (private)",
        "ftp://example.com/a.png": "unsupported scheme 'ftp' (http and https only)",
        "file:///etc/passwd": "unsupported scheme 'file' (http and https only)",
    }
    with Fetcher(SourceSettings(retries=0)) as f:
        for url, reason in cases.items():
            err = failure(f, url)
            assert reason in err.reason and not err.retryable, url
        outcomes = dict(f.fetch_many(cases))
    assert all(isinstance(o, FetchError) for o in outcomes.values()) and len(outcomes) == 9
    assert server.connections == before


def test_every_resolved_address_is_checked_and_the_checked_one_used(server: ImageServer) -> None:
    asked: list[str] = []

    def hostile(host: str, port: int) -> list[str]:
        asked.append(host)
        answers = {"mixed.test": ["93.184.215.14", "127.0.0.1"], "half.test": ["127.0.0.2"]}
        return answers.get(host, ["127.0.0.1"]) + (["127.0.0.1"] if host == "half.test" else [])

    before = server.connections
    with Fetcher(SourceSettings(retries=0), resolver=hostile) as f:
        err = failure(f, server.url("/img/a.png", host="mixed.test"))
    assert err.reason == "refused address 127.0.0.1 (loopback) for mixed.test"
    # The first address allowed, the second not: refused whole, nothing sent.
    with Fetcher(settings(allowed_networks=["127.0.0.2/32"]), resolver=hostile) as f:
        err = failure(f, server.url("/img/a.png", host="half.test"))
    assert err.reason == "refused address 127.0.0.1 (loopback) for half.test"
    assert server.connections == before
    with Fetcher(settings(), resolver=hostile) as f:
        got = f.fetch(server.url("/img/a.png", host="pinned.test"))
    # Connected to the resolver's address with the name in Host: the system resolver
    # knows no "pinned.test", so no second lookup happened.
    assert got.data == server.pictures["png"] and asked == [
        "mixed.test",
        "half.test",
        "pinned.test",
    ]
    assert server.hosts[-1] == f"pinned.test:{server.port}"


def test_per_host_limit_holds_across_hosts(server: ImageServer) -> None:
    def same(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    urls = [server.url(f"/slow/{i}", host=h) for i in range(6) for h in ("a.test", "b.test")]
    with Fetcher(settings(per_host=2, download_threads=8), resolver=same) as f:
        outcomes = list(f.fetch_many(urls))
    assert sorted(u for u, _ in outcomes) == sorted(urls)
    assert all(isinstance(o, Fetched) for _, o in outcomes)
    port = server.port
    assert server.max_in_flight[f"a.test:{port}"] == 2
    assert server.max_in_flight[f"b.test:{port}"] == 2


def test_fetch_many_reports_every_outcome(server: ImageServer, fetcher: Fetcher) -> None:
    urls = [server.url("/img/d.png"), server.url("/status/404/many"), "gopher://x/", "nonsense"]
    outcomes = dict(fetcher.fetch_many(urls))
    assert isinstance(outcomes[urls[0]], Fetched)
    assert [getattr(outcomes[u], "reason", None) for u in urls[1:]] == [
        "HTTP 404",
        "unsupported scheme 'gopher' (http and https only)",
        "unsupported scheme none (http and https only)",
    ]


def test_unreachable_port_is_a_retryable_connection_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        with Fetcher(settings(retries=1)) as f:
            err = failure(f, f"http://127.0.0.1:{port}/a.png")
    assert err.reason.startswith("cannot connect: ") and err.retryable and err.attempts == 2


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("no openssl to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=images.test", "-addext", "subjectAltName=DNS:images.test",
         "-keyout", str(folder / "key.pem"), "-out", str(folder / "cert.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    return folder


def test_https_verifies_the_name_on_the_pinned_address(certificate: Path) -> None:
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(certificate / "cert.pem", certificate / "key.pem")
    srv = ImageServer("127.0.0.1", tls=tls)
    trust = ssl.create_default_context(cafile=str(certificate / "cert.pem"))
    try:
        with Fetcher(settings(), resolver=lambda h, p: ["127.0.0.1"], tls=trust) as f:
            got = f.fetch(srv.url("/img/a.png", host="images.test"))
            assert got.data == srv.pictures["png"]
            err = failure(f, srv.url("/img/a.png", host="other.test"))
        assert err.reason == "TLS error: hostname 'other.test' doesn't match 'images.test'"
        assert not err.retryable and err.attempts == 1
    finally:
        srv.stop()


REFUSED = {
    "127.0.0.1": "loopback",
    "127.255.0.9": "loopback",
    "0.0.0.0": "unspecified",
    "0.1.2.3": "unspecified",
    "10.1.2.3": "private",
    "172.16.0.1": "private",
    "172.31.255.255": "private",
    "192.168.1.1": "private",
    "100.64.0.1": "carrier-grade NAT",
    "100.127.255.254": "carrier-grade NAT",
    "169.254.169.254": "cloud metadata",
    "169.254.1.1": "link-local",
    "224.0.0.1": "multicast",
    "239.255.255.250": "multicast",
    "255.255.255.255": "reserved",
    "240.0.0.1": "reserved",
    "192.0.2.1": "reserved",
    "198.18.0.1": "reserved",
    "::": "unspecified",
    "::1": "loopback",
    "fc00::1": "private",
    "fd12:3456::1": "private",
    "fd00:ec2::254": "cloud metadata",
    "fe80::1": "link-local",
    "fe80::1%eth0": "link-local",
    "ff02::1": "multicast",
    "::ffff:127.0.0.1": "loopback, as 127.0.0.1",
    "::ffff:10.0.0.1": "private, as 10.0.0.1",
    "::ffff:169.254.169.254": "cloud metadata, as 169.254.169.254",
    "64:ff9b::7f00:1": "loopback, as 127.0.0.1",
    "2002:a00:1::": "private, as 10.0.0.1",
    "2001:db8::1": "reserved",
    "2001:0:4136:e378:8000:63bf:3fff:fdd2": "reserved",  # Teredo
    "100::1": "reserved",
    "::127.0.0.1": "reserved",  # IPv4-compatible, deprecated
}
ALLOWED = [
    *("8.8.8.8", "93.184.215.14", "1.1.1.1", "172.32.0.1", "100.128.0.1", "2606:4700::1111"),
    *("2a00:1450:4001::200e", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::"),
]


@pytest.mark.parametrize("text", REFUSED)
def test_guard_refuses(text: str) -> None:
    address = guard.parse_address(text)
    assert guard.classify(address) == REFUSED[text]
    with pytest.raises(guard.RefusedAddress):
        guard.check(address)


@pytest.mark.parametrize("text", ALLOWED)
def test_guard_passes_public_unicast(text: str) -> None:
    guard.check(guard.parse_address(text))


def test_guard_allow_list_and_every_address() -> None:
    nets = guard.parse_networks(["10.1.2.0/24", "fd00::/8"])
    guard.check(ipaddress.ip_address("10.1.2.3"), nets)
    guard.check(ipaddress.ip_address("::ffff:10.1.2.3"), nets)  # the mapped form too
    guard.check(ipaddress.ip_address("fd00::5"), nets)
    with pytest.raises(guard.RefusedAddress, match=r"10\.1\.3\.1 \(private\)"):
        guard.check(ipaddress.ip_address("10.1.3.1"), nets)
    good, bad = ipaddress.ip_address("8.8.8.8"), ipaddress.ip_address("127.0.0.1")
    with pytest.raises(guard.RefusedAddress):
        guard.check_all([good, bad])


def test_settings_refuse_a_bad_network() -> None:
    with pytest.raises(ValueError, match="allowed_networks"):
        SourceSettings(allowed_networks=["10.0.0.1/8"])  # host bits set: a typo


def test_images_open_after_download(server: ImageServer, fetcher: Fetcher) -> None:
    import io

    got = fetcher.fetch(server.url("/img/e.webp"))
    with Image.open(io.BytesIO(got.data)) as image:
        assert image.format == "WEBP"
