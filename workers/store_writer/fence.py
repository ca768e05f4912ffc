"""Fencing: a store writer that lost its lock writes nothing until it holds it again.

The lock (``writer_lock.py``) is held by the worker's main process; its tasks
run in a pool process forked from it, which learns the lock's token from the
environment (``TOKEN_ENV``, set when the lock is taken). Before each task the
pool process checks that the lock's key still holds that token. While it does
not (the lock expired during a stall and another writer took it), the task
waits; after ``max_wait_s`` its message goes back to the queue (not acked, not
counted as a delivery), so nothing is lost and nothing is written by two
writers. The check and the write are not one atomic step: a write that began
before the lock was lost still ends.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from visionnet.workers.store_writer.writer_lock import LOCK_KEY

log = logging.getLogger(__name__)
TOKEN_ENV = "VISIONNET_STORE_WRITER_TOKEN"


class Fence:
    """Whether this writer holds the store writer lock, asked of Redis."""

    def __init__(self, client: Any, token: str, key: str = LOCK_KEY) -> None:
        self._r = client
        self._token = token
        self._key = key

    @classmethod
    def from_environment(cls, client: Any) -> Fence | None:
        """The fence of a pool process whose parent holds the lock; None outside a writer."""
        token = os.environ.get(TOKEN_ENV)
        return cls(client, token) if token else None

    def held(self) -> bool:
        value = self._r.get(self._key)
        if isinstance(value, bytes):
            value = value.decode()
        return bool(value == self._token)

    def wait_until_held(self, max_wait_s: float, poll_s: float = 0.5) -> bool:
        """True once the lock is held (at once, normally); False after ``max_wait_s``."""
        if self.held():
            return True
        log.error("the store writer lost its lock (another writer holds it): writes paused "
                  "until it holds the lock again")  # fmt: skip
        deadline = time.monotonic() + max_wait_s
        while time.monotonic() < deadline:
            time.sleep(poll_s)
            if self.held():
                log.warning("the store writer holds its lock again: writes resume")
                return True
        return False
