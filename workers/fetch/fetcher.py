"""Downloads of many URLs: a pool of threads, a limit per host, retries that may change.

``fetch`` is one URL on the caller's thread; ``fetch_many`` spreads an
iterable of URLs over ``download_threads`` threads and starts a URL only when
its host is under ``per_host``, so a list dominated by one host neither
hammers it nor parks every thread behind it while other hosts wait. Both
count against the same per-host slots, so the limit holds across callers. A
download keeps its host's slot through its retries' waits: a host that asked
us to slow down (429, Retry-After) gets no other request from us meanwhile.
"""

from __future__ import annotations

import logging
import queue
import random
import ssl
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

from visionnet.config.settings import SourceSettings
from visionnet.workers.fetch import attempt, guard
from visionnet.workers.fetch.connection import PinnedPools
from visionnet.workers.fetch.outcome import Fetched, FetchError
from visionnet.workers.fetch.retry import backoff_s
from visionnet.workers.fetch.sniff import not_an_image

log = logging.getLogger(__name__)

Outcome = tuple[str, Fetched | FetchError]
_STOPPED = "download stopped: the fetcher was closed"


class HostSlots:
    """At most ``per_host`` downloads at once per host; hosts with none running are forgotten."""

    def __init__(self, per_host: int) -> None:
        self._per_host = per_host
        self._busy: dict[str, int] = {}
        self._cond = threading.Condition()

    def try_acquire(self, host: str) -> bool:
        with self._cond:
            if self._busy.get(host, 0) >= self._per_host:
                return False
            self._busy[host] = self._busy.get(host, 0) + 1
            return True

    def acquire(self, host: str) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._busy.get(host, 0) < self._per_host)
            self._busy[host] = self._busy.get(host, 0) + 1

    def release(self, host: str) -> None:
        with self._cond:
            left = self._busy[host] - 1
            if left:
                self._busy[host] = left
            else:
                del self._busy[host]
            self._cond.notify_all()


class Fetcher:
    """Downloads images by URL through the SSRF guard; thread-safe.

    ``resolver`` and ``tls`` exist for tests: a resolver that answers what a
    hostile DNS server would, a TLS context that trusts a test certificate.
    """

    def __init__(
        self,
        settings: SourceSettings,
        *,
        resolver: attempt.Resolver | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.settings = settings
        self._limits = attempt.Limits(
            connect_timeout_s=settings.connect_timeout_s,
            read_timeout_s=settings.read_timeout_s,
            max_bytes=settings.max_bytes,
            max_redirects=settings.max_redirects,
            user_agent=settings.user_agent,
            allowed=guard.parse_networks(settings.allowed_networks),
        )
        self._resolver = resolver or attempt.system_resolver
        self._pools = PinnedPools(settings.per_host, tls=tls)
        self._slots = HostSlots(settings.per_host)
        self._closed = threading.Event()
        self._rng = random.Random()
        self._rng_lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()

    def fetch(self, url: str) -> Fetched:
        """The image at ``url``, retried as the settings say; raises FetchError."""
        host = attempt.host_key(url)
        self._slots.acquire(host)
        try:
            return self._download(url)
        finally:
            self._slots.release(host)

    def fetch_many(self, urls: Iterable[str]) -> Iterator[Outcome]:
        """(url, Fetched or FetchError) for each URL as it completes, in any order.

        The iterable is read ahead only a little (four URLs per thread), so a
        list of millions is never held in memory.
        """
        threads = self.settings.download_threads
        done: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
        waiting: deque[tuple[str, str]] = deque()
        source = iter(urls)
        exhausted = False
        running = 0
        while True:
            while not exhausted and len(waiting) < 4 * threads:
                url = next(source, None)
                if url is None:
                    exhausted = True
                    break
                try:
                    waiting.append((url, attempt.host_key(url)))
                except FetchError as exc:
                    yield url, exc
            running += self._start_ready(waiting, threads - running, done)
            if running == 0 and waiting:
                # Every waiting host is busy with other callers' downloads: one
                # thread waits for its slot rather than this loop spinning.
                url, host = waiting.popleft()
                self._submit(url, host, done, holding=False)
                running += 1
            if running == 0:
                return
            yield done.get()
            running -= 1

    def _start_ready(
        self, waiting: deque[tuple[str, str]], free: int, done: queue.SimpleQueue[Outcome]
    ) -> int:
        started = 0
        kept: deque[tuple[str, str]] = deque()
        while waiting and started < free:
            url, host = waiting.popleft()
            if self._slots.try_acquire(host):
                self._submit(url, host, done, holding=True)
                started += 1
            else:
                kept.append((url, host))
        waiting.extendleft(reversed(kept))
        return started

    def _submit(self, url: str, host: str, done: queue.SimpleQueue[Outcome], holding: bool) -> None:
        def run() -> None:
            outcome: Fetched | FetchError
            if not holding:
                self._slots.acquire(host)
            try:
                if self._closed.is_set():
                    raise FetchError(_STOPPED, True, 0)
                outcome = self._download(url)
            except FetchError as exc:
                outcome = exc
            except Exception as exc:  # a bug here must not lose the URL's outcome
                log.exception("download of %s failed", url)
                outcome = FetchError(f"download failed: {type(exc).__name__}", False)
            finally:
                self._slots.release(host)
            done.put((url, outcome))

        self._pool().submit(run)

    def _pool(self) -> ThreadPoolExecutor:
        with self._executor_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    self.settings.download_threads, thread_name_prefix="fetch"
                )
            return self._executor

    def _download(self, url: str) -> Fetched:
        start = time.monotonic()
        tries = 0
        while True:
            tries += 1
            try:
                body = attempt.run(url, self._pools, self._limits, self._resolver)
                problem = not_an_image(body.data)
                if problem:
                    raise FetchError(problem, False)
            except FetchError as exc:
                exc.attempts = tries
                wait = self._wait_before_retry(exc, tries)
                if wait is None:
                    raise
                if self._closed.wait(wait):
                    raise FetchError(_STOPPED, True, tries) from None
                continue
            return Fetched(
                url=url,
                final_url=body.final_url,
                data=body.data,
                content_type=body.content_type,
                seconds=time.monotonic() - start,
                attempts=tries,
            )

    def _wait_before_retry(self, exc: FetchError, tries: int) -> float | None:
        """Seconds to wait before the next try, or None to give up with ``exc``."""
        s = self.settings
        if not exc.retryable or tries > s.retries or self._closed.is_set():
            return None
        asked = exc.retry_after if isinstance(exc, attempt.StatusError) else None
        if asked is None:
            with self._rng_lock:
                return backoff_s(s.backoff_s, tries, self._rng)
        if asked > s.max_retry_after_s:
            exc.reason = f"{exc.reason} (Retry-After {asked:g} s, over {s.max_retry_after_s:g} s)"
            exc.args = (exc.reason,)
            return None
        return asked

    def close(self) -> None:
        """Stop waits between retries, end queued downloads as stopped (retryable), let
        running ones finish, close the connections."""
        self._closed.set()
        with self._executor_lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)
        self._pools.close()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
