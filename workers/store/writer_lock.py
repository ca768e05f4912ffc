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


def hold_writer_lock(
    client: redis.Redis, wait_s: float, ttl_s: float = 30.0, key: str = LOCK_KEY
) -> Lock:
    """Take the lock (waiting up to ``wait_s``) and keep it alive from a daemon thread."""
    # thread_local=False: the token must be visible to the refresh thread.
    lock: Lock = client.lock(
        key, timeout=ttl_s, blocking=True, blocking_timeout=wait_s, thread_local=False
    )
    if not lock.acquire():
        raise WriterLockTakenError(
            "another store worker is running: the vector store takes exactly one writer "
            f"(Redis key {key!r}). Stop it, or wait {ttl_s:.0f}s after it died."
        )

    def _refresh() -> None:
        while True:
            threading.Event().wait(ttl_s / 3)
            try:
                lock.reacquire()
            except Exception:  # keep trying while Redis is away
                log.exception("could not refresh the store writer lock")

    threading.Thread(target=_refresh, name="writer-lock", daemon=True).start()
    return lock
