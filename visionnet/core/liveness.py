"""Which workers are alive and what they consume, as the workers themselves report it.

Health and ``/metrics`` used to ask the workers by a Celery broadcast
(``inspect().active_queues()``), which waits out its whole timeout on every
request and grows with the number of web processes and probes. Instead each
worker writes its own record every few seconds (``visionnet.workers.liveness``)
under a key that expires after its TTL, and a reader gets every record in one
Redis round trip. A worker killed by SIGKILL stops writing, and its record
expires by Redis' clock (no clock of another host is trusted). One writer per
worker, whatever the number of web processes or probes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import redis

PREFIX = "visionnet:worker:"
NAMES = "visionnet:workers"  # the names that may have a record; pruned as records expire

# KEYS: the record, the set of names. ARGV: the record, its TTL in ms, the name, PREFIX.
# Prunes the names whose records expired, so the set stays as small as the fleet.
_BEAT = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
for _, name in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if redis.call('EXISTS', ARGV[4] .. name) == 0 then redis.call('SREM', KEYS[2], name) end
end
return 1
"""

# KEYS: the set of names. ARGV: PREFIX. Read-only: the records that have not expired.
_READ = """
local out = {}
for _, name in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local record = redis.call('GET', ARGV[1] .. name)
  if record then table.insert(out, record) end
end
return out
"""


@dataclass(frozen=True)
class WorkerRecord:
    """One worker's report of itself: its Celery node name, where it runs, what it consumes."""

    name: str  # Celery node name, e.g. ``models@host``
    host: str
    pid: int  # the worker's main (consumer) process
    queues: list[str]
    time: float  # Unix time of the report, by the worker's clock (for people, not for expiry)
    ttl_s: float

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> WorkerRecord:
        data: dict[str, Any] = json.loads(text)
        return cls(
            name=str(data["name"]),
            host=str(data["host"]),
            pid=int(data["pid"]),
            queues=[str(q) for q in data["queues"]],
            time=float(data["time"]),
            ttl_s=float(data["ttl_s"]),
        )


class WorkerRegistry:
    """The liveness records in Redis: written by each worker, read by the web."""

    def __init__(self, client: redis.Redis) -> None:
        self._r = client
        self._beat = client.register_script(_BEAT)
        self._read = client.register_script(_READ)

    def beat(self, record: WorkerRecord) -> None:
        """Write (or renew) one worker's record; it expires ``record.ttl_s`` from now."""
        ttl_ms = max(1, round(record.ttl_s * 1000))
        self._beat(
            keys=[PREFIX + record.name, NAMES],
            args=[record.to_json(), ttl_ms, record.name, PREFIX],
        )

    def forget(self, name: str) -> None:
        """A worker that stops cleanly drops its record at once, not after its TTL."""
        pipe = self._r.pipeline()
        pipe.delete(PREFIX + name)
        pipe.srem(NAMES, name)
        pipe.execute()

    def alive(self) -> list[WorkerRecord]:
        """Every worker whose record has not expired, by name; one round trip, no writes."""
        raw = self._read(keys=[NAMES], args=[PREFIX])
        return sorted((WorkerRecord.from_json(r) for r in raw), key=lambda w: w.name)


def consumers(workers: list[WorkerRecord]) -> dict[str, list[str]]:
    """Queue name -> the names of the live workers consuming it."""
    out: dict[str, list[str]] = {}
    for worker in workers:
        for queue in worker.queues:
            out.setdefault(queue, []).append(worker.name)
    return out
