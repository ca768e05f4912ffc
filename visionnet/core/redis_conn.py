"""One way to turn the configured Redis URL into a redis-py client.

Celery spells a unix socket ``redis+socket://PATH``; redis-py wants
``unix://PATH``. Both sides must reach the same server, so the translation
lives here once.
"""

from __future__ import annotations

import redis


def to_redis_py_url(url: str) -> str:
    if url.startswith("redis+socket://"):
        return "unix://" + url.removeprefix("redis+socket://")
    if url.startswith("socket://"):
        return "unix://" + url.removeprefix("socket://")
    return url


def connect(url: str, timeout_s: float = 5.0, *, decode: bool = True) -> redis.Redis:
    """A client that fails fast when Redis is down; ``decode`` gives str, not bytes."""
    return redis.Redis.from_url(
        to_redis_py_url(url),
        decode_responses=decode,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
    )
