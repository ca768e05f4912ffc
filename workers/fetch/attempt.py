"""One attempt at a URL: resolve, check, connect to the checked address, follow redirects,
read the body within the byte cap and the attempt's deadline.

Redirects are followed here rather than by urllib3 so that every hop passes the
same scheme check and address guard as the first URL: a public server that
answers ``302 Location: http://169.254.169.254/`` gets a refusal, and no request
leaves for the refused address.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urljoin

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    LocationParseError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)
from urllib3.util import parse_url
from urllib3.util.ssl_match_hostname import CertificateError

from visionnet.workers.fetch import guard
from visionnet.workers.fetch.connection import PinnedPools, Target, request
from visionnet.workers.fetch.deadline import Watch
from visionnet.workers.fetch.outcome import FetchError
from visionnet.workers.fetch.retry import retry_after_s, retryable_status

# host, port -> the addresses to check and connect to, in the order to try them.
Resolver = Callable[[str, int], Sequence[str]]

REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 256 * 1024


@dataclass(frozen=True)
class Limits:
    connect_timeout_s: float
    read_timeout_s: float
    max_bytes: int
    max_redirects: int
    user_agent: str
    allowed: tuple[guard.IPNetwork, ...]


@dataclass(frozen=True)
class Body:
    final_url: str
    data: bytes
    content_type: str | None


class StatusError(FetchError):
    """An HTTP status that ends the attempt, with the wait the server asked for."""

    def __init__(self, status: int, retry_after: float | None) -> None:
        super().__init__(f"HTTP {status}", retryable_status(status))
        self.status = status
        self.retry_after = retry_after


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``getaddrinfo`` gives for the name, first occurrence first."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class Hop:
    """A URL split into where it goes and what it asks for."""

    scheme: str
    host: str
    port: int
    path: str


def parse(url: str) -> Hop:
    """The parts of an http(s) URL, or the URL's error (not retryable)."""
    try:
        parts = parse_url(url.strip())
    except LocationParseError:
        raise FetchError("bad URL", False) from None
    scheme = (parts.scheme or "").lower()
    if scheme not in ("http", "https"):
        shown = f"'{scheme}'" if scheme else "none"
        raise FetchError(f"unsupported scheme {shown} (http and https only)", False)
    if not parts.host:
        raise FetchError("bad URL: no host", False)
    port = parts.port or (443 if scheme == "https" else 80)
    return Hop(scheme, parts.host.strip("[]").lower(), port, parts.request_uri)


def host_key(url: str) -> str:
    """The host a URL's downloads count against for ``per_host`` (raises FetchError)."""
    return parse(url).host


def addresses(hop: Hop, resolver: Resolver) -> list[guard.IPAddress]:
    try:
        return [guard.parse_address(hop.host)]  # an address literal: no lookup
    except ValueError:
        pass
    try:
        found = [guard.parse_address(a) for a in resolver(hop.host, hop.port)]
    except socket.gaierror as exc:
        # EAI_AGAIN is a resolver's passing trouble; "no such name" stays so.
        raise FetchError(
            f"cannot resolve {hop.host}: {exc.strerror or exc}", exc.errno == socket.EAI_AGAIN
        ) from None
    if not found:
        raise FetchError(f"cannot resolve {hop.host}: no address", True)
    return found


def run(url: str, pools: PinnedPools, limits: Limits, resolver: Resolver) -> Body:
    """One attempt, redirects included; raises FetchError (StatusError for a status).

    The attempt's deadline covers every hop, headers and body alike: past it the
    sockets are shut (``deadline.Deadlines``) and whatever broke reads as the timeout.
    """
    deadline = time.monotonic() + limits.read_timeout_s
    with pools.deadlines.watch(deadline) as watch:
        try:
            return _follow(url, pools, limits, resolver, deadline, watch)
        except FetchError as exc:
            if watch.expired and exc.retryable and not isinstance(exc, StatusError):
                raise _timed_out(limits) from None
            raise


def _follow(
    url: str,
    pools: PinnedPools,
    limits: Limits,
    resolver: Resolver,
    deadline: float,
    watch: Watch,
) -> Body:
    current = url
    for _ in range(limits.max_redirects + 1):
        hop = parse(current)
        found = addresses(hop, resolver)
        try:
            guard.check_all(found, limits.allowed)
        except guard.RefusedAddress as exc:
            via = "" if _is_literal(hop.host) else f" for {hop.host}"
            raise FetchError(f"{exc}{via}", False) from None
        response = _connect(hop, found, pools, limits, deadline)
        try:
            location = response.headers.get("Location")
            if response.status in REDIRECTS and location:
                _discard(response)
                current = urljoin(current, location.strip())
                continue
            if not 200 <= response.status <= 299:
                wait = retry_after_s(response.headers.get("Retry-After"))
                _discard(response)
                raise StatusError(response.status, wait)
            data = _read_body(response, limits, deadline)
            return Body(current, data, response.headers.get("Content-Type"))
        finally:
            watch.discard(getattr(response, "connection", None))
            response.release_conn()
    raise FetchError(f"too many redirects ({limits.max_redirects})", False)


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _connect(
    hop: Hop,
    found: Sequence[guard.IPAddress],
    pools: PinnedPools,
    limits: Limits,
    deadline: float,
) -> urllib3.BaseHTTPResponse:
    """The response of the first checked address that takes the connection."""
    headers = {
        "User-Agent": limits.user_agent,
        "Accept": "image/*,*/*;q=0.8",
        "Accept-Encoding": "identity",  # the cap counts the bytes that arrive
    }
    last: FetchError | None = None
    for address in found:
        remaining = _remaining(deadline, limits)
        timeout = urllib3.Timeout(connect=min(limits.connect_timeout_s, remaining), read=remaining)
        target = Target(hop.scheme, str(address), hop.port, hop.host)
        try:
            return request(pools, target, hop.path, headers, timeout)
        except (NewConnectionError, ConnectTimeoutError) as exc:
            last = describe(exc, limits)  # the name's next address may answer
        except HTTPError as exc:
            raise describe(exc, limits) from None
        except OSError as exc:  # a socket shut by the deadline, as it may surface
            raise FetchError(f"connection broken: {exc}", True) from None
    assert last is not None
    raise last


def _remaining(deadline: float, limits: Limits) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise _timed_out(limits)
    return left


def _timed_out(limits: Limits) -> FetchError:
    return FetchError(f"timed out after {limits.read_timeout_s:g} s", True)


def _read_body(response: urllib3.BaseHTTPResponse, limits: Limits, deadline: float) -> bytes:
    """The body, refused past ``max_bytes`` (announced or counted) or past the deadline.

    ``read1`` returns after at most one receive, and the socket's timeout is
    set to what is left of the deadline before each: a server sending a byte
    a second cannot stretch the attempt by resetting a per-receive timeout.
    """
    length = response.headers.get("Content-Length")
    chunked = "chunked" in response.headers.get("Transfer-Encoding", "").lower()
    announced = int(length) if length is not None and length.strip().isdigit() else None
    if not chunked and announced is not None and announced > limits.max_bytes:
        response.close()
        raise FetchError(f"body over {limits.max_bytes} bytes", False)
    parts: list[bytes] = []
    size = 0
    try:
        while True:
            sock = getattr(response.connection, "sock", None)
            if sock is not None:
                sock.settimeout(_remaining(deadline, limits))
            elif time.monotonic() > deadline:
                _remaining(deadline, limits)
            part = response.read1(_CHUNK)
            if not part:
                return b"".join(parts)
            size += len(part)
            if size > limits.max_bytes:
                raise FetchError(f"body over {limits.max_bytes} bytes", False)
            parts.append(part)
    except HTTPError as exc:
        response.close()
        raise describe(exc, limits) from None
    except OSError as exc:
        response.close()
        raise FetchError(f"connection broken: {exc}", True) from None
    except FetchError:
        response.close()  # the connection holds an unread rest: not reused
        raise


def _discard(response: urllib3.BaseHTTPResponse) -> None:
    """A redirect's own body: read if small (its connection is then reused), else dropped."""
    length = response.headers.get("Content-Length", "")
    if length.strip().isdigit() and int(length) <= 64 * 1024:
        try:
            response.drain_conn()
            return
        except HTTPError:
            pass
    response.close()


def describe(exc: HTTPError, limits: Limits) -> FetchError:
    """urllib3's error as a reason a user reads, and whether it may pass."""
    if isinstance(exc, NewConnectionError):
        cause = exc.__cause__ or exc.__context__
        text = getattr(cause, "strerror", None) or str(cause or exc).split(": ")[-1]
        return FetchError(f"cannot connect: {text}", True)
    if isinstance(exc, ConnectTimeoutError):
        return FetchError(f"connection timed out after {limits.connect_timeout_s:g} s", True)
    if isinstance(exc, ReadTimeoutError):
        return _timed_out(limits)
    if isinstance(exc, SSLError):
        # A certificate that fails for the name stays failed; a handshake cut short may pass.
        return FetchError(f"TLS error: {str(exc)[-160:]}", not _certificate_failed(exc))
    if isinstance(exc, ProtocolError):
        return FetchError(f"connection broken: {_last_words(exc)}", True)
    if isinstance(exc, LocationParseError):
        return FetchError("bad URL", False)
    return FetchError(f"download failed: {type(exc).__name__}: {_last_words(exc)}", True)


def _certificate_failed(exc: BaseException) -> bool:
    """A certificate check in the error's chain (``CertificateError`` subclasses ValueError)."""
    seen: list[BaseException] = [exc]
    while seen:
        err = seen.pop()
        if isinstance(err, (ssl.SSLCertVerificationError, CertificateError)):
            return True
        seen.extend(a for a in err.args if isinstance(a, BaseException))
        seen.extend(e for e in (err.__cause__, err.__context__) if e is not None and e is not err)
    return False


def _last_words(exc: BaseException) -> str:
    args = exc.args
    inner = args[-1] if len(args) > 1 and isinstance(args[-1], BaseException) else None
    return str(inner or exc)[:160]
