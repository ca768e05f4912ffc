"""At most one store writer per deployment, enforced with a Redis lock.

Milvus Lite corrupts its log under two writers, and a second ``visionnet
worker store`` is an easy mistake to make on a new host. The lock expires on
its own if its holder dies, so a restarted writer waits at most ``ttl_s``.
"""

from __future__ import annotations

import logging
import threading

import redis
from redis.lock import Lock

log = logging.getLogger(__name__)
LOCK_KEY = "visionnet:store-writer"


class WriterLockTakenError(RuntimeError):
    pass


class WriterLock:
    """The held lock and the thread that keeps it alive; ``release`` ends both."""

    def __init__(self, lock: Lock, ttl_s: float) -> None:
        self._lock = lock
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._refresh, args=(ttl_s / 3,), name="writer-lock", daemon=True
        )
        self._thread.start()

    @property
    def token(self) -> str:
        """This holder's value of the lock key (its pool processes fence with it)."""
        token = self._lock.local.token
        return token.decode() if isinstance(token, bytes) else str(token)

    def _refresh(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            try:
                self._lock.reacquire()
            except redis.exceptions.LockNotOwnedError:
                # It expired while this process (or Redis) stalled for longer than
                # the TTL. Take it again at once if it is free: a writer without
                # the lock would let a second writer start beside it.
                self._take_back()
            except Exception:  # keep trying while Redis is away
                log.exception("could not refresh the store writer lock")

    def _take_back(self) -> None:
        try:
            # The same token: the pool processes' fence (fence.py) knows this one.
            if self._lock.acquire(blocking=False, token=self.token):
                log.warning("the store writer lock had expired (a stall longer than its TTL); "
                            "taken again")  # fmt: skip
            else:
                log.error("the store writer lock expired and another writer holds it now: "
                          "this one writes nothing until it holds it again; stop one of "
                          "them")  # fmt: skip
        except redis.exceptions.RedisError:
            log.exception("could not take the store writer lock again")

    def release(self) -> None:
        self._stop.set()
        self._thread.join()
        try:
            self._lock.release()
        except redis.exceptions.RedisError:  # expired, or Redis already gone: nothing to hand on
            log.warning("the store writer lock was not released; it expires on its own")


def hold_writer_lock(
    client: redis.Redis, wait_s: float, ttl_s: float = 30.0, key: str = LOCK_KEY
) -> WriterLock:
    """Take the lock (waiting up to ``wait_s``) and keep it alive until released."""
    # thread_local=False: the token must be visible to the refresh thread.
    lock: Lock = client.lock(
        key, timeout=ttl_s, blocking=True, blocking_timeout=wait_s, thread_local=False
    )
    if not lock.acquire():
        raise WriterLockTakenError(
            "another store worker is running: the vector store takes exactly one writer "
            f"(Redis key {key!r}). Stop it, or wait {ttl_s:.0f}s after it died."
        )
    return WriterLock(lock, ttl_s)
