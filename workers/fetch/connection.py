"""Connections to a checked address: the name is for HTTP and TLS, never for a second lookup.

A guard that checks a name's addresses and then lets the HTTP library resolve
the name again can be fooled by a DNS server that answers a public address the
first time and 127.0.0.1 the second ("DNS rebinding"). So urllib3 gets the IP
address itself as the pool's host, and the name only where it belongs: the
``Host`` header, SNI (``server_hostname``) and the certificate check
(``assert_hostname``), which still verifies the certificate against the name.

Their connections join the attempt's deadline watch (``deadline``). Pools are
kept per (scheme, address, port, name) so keep-alive connections are
reused across downloads from one host; the least recently used pool is closed
once too many are open.
"""

from __future__ import annotations

import ssl
import threading
from collections import OrderedDict
from dataclasses import dataclass

import urllib3
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from visionnet.workers.fetch.deadline import (
    Deadlines,
    WatchedHTTPConnection,
    WatchedHTTPSConnection,
)


@dataclass(frozen=True)
class Target:
    """Where one request goes: the checked address, and the name the URL gave."""

    scheme: str  # "http" or "https"
    address: str  # the checked IP address, without brackets
    port: int
    host: str  # the URL's host name (or address literal), for Host, SNI and the certificate

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


class PinnedPools:
    """urllib3 pools that connect to a given address; thread-safe."""

    def __init__(
        self, per_pool: int, max_pools: int = 256, tls: ssl.SSLContext | None = None
    ) -> None:
        self._per_pool = per_pool
        self._max_pools = max_pools
        self._tls = tls
        self._pools: OrderedDict[Target, HTTPConnectionPool] = OrderedDict()
        self._lock = threading.Lock()
        self.deadlines = Deadlines()

    def get(self, target: Target) -> HTTPConnectionPool:
        with self._lock:
            pool = self._pools.get(target)
            if pool is not None:
                self._pools.move_to_end(target)
                return pool
            pool = self._new(target)
            self._pools[target] = pool
            if len(self._pools) > self._max_pools:
                _, old = self._pools.popitem(last=False)
                old.close()  # idle connections now; busy ones close when returned
            return pool

    def _new(self, target: Target) -> HTTPConnectionPool:
        # block=False: the fetcher limits requests per host itself; retries and
        # redirects are the fetcher's too, so every hop passes the guard.
        common = {"maxsize": self._per_pool, "block": False, "retries": False}
        pool: HTTPConnectionPool
        if target.scheme == "http":
            pool = HTTPConnectionPool(target.address, target.port, **common)  # type: ignore[arg-type]
            pool.ConnectionCls = WatchedHTTPConnection
            return pool
        pool = HTTPSConnectionPool(
            target.address,
            target.port,
            server_hostname=target.host,
            assert_hostname=target.host,
            cert_reqs="CERT_REQUIRED",
            ssl_context=self._tls,
            **common,  # type: ignore[arg-type]
        )
        pool.ConnectionCls = WatchedHTTPSConnection
        return pool

    def close(self) -> None:
        with self._lock:
            pools = list(self._pools.values())
            self._pools.clear()
        for pool in pools:
            pool.close()
        self.deadlines.stop()


def request(
    pools: PinnedPools,
    target: Target,
    path: str,
    headers: dict[str, str],
    timeout: urllib3.Timeout,
) -> urllib3.BaseHTTPResponse:
    """Send a GET for ``path`` to ``target``; the body is left unread for the caller."""
    return pools.get(target).urlopen(
        "GET",
        path,
        headers={**headers, "Host": target.host_header},
        redirect=False,
        retries=False,
        timeout=timeout,
        preload_content=False,
        decode_content=False,
        assert_same_host=False,
    )
