"""Uploaded files parked in Redis until a worker reads them.

Workers may run on other hosts than the web, so an upload cannot be handed
over as a path on the web's disk. Blobs expire on their own; the task that
consumed them deletes them early.
"""

from __future__ import annotations

import redis

PREFIX = "visionnet:blob:"


class BlobStore:
    def __init__(self, client: redis.Redis, ttl_s: int) -> None:
        self._r = client
        self._ttl = ttl_s

    def put(self, job_id: str, index: int, data: bytes) -> str:
        key = f"{PREFIX}{job_id}:{index}"
        self._r.set(key, data, ex=self._ttl)
        return key

    def get(self, key: str) -> bytes | None:
        if not key.startswith(PREFIX):
            raise ValueError(f"not a blob key: {key!r}")
        value = self._r.get(key)
        return value if isinstance(value, bytes) else None

    def delete(self, *keys: str) -> None:
        if keys:
            self._r.delete(*keys)
