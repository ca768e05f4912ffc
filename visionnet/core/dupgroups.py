"""A duplicates job's state in Redis: its checkpoint while it runs, its groups once done.

Why Redis and not a file under the data directory (as export does): the web
pages the groups with one ``LRANGE`` per request (never reading the whole
result), the groups expire with the job's record (``jobs.retention_s``), and
hosts need no shared disk. Groups are stored already sorted, one JSON
document per group, so a page is a slice.

The checkpoint is what makes a redelivered job continue instead of starting
over: the last image id it processed (images are processed in id order) and
the near-duplicate pairs found up to there, written together in one
MULTI/EXEC, so a worker killed between two checkpoints leaves the previous
one whole. Pairs are appended, never rewritten: a checkpoint costs the pairs
found since the last one, not the whole union-find.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from visionnet.core.jobs import PREFIX


def groups_key(job_id: str) -> str:
    return f"{PREFIX}{job_id}:groups"


def checkpoint_keys(job_id: str) -> tuple[str, str]:
    """The checkpoint's hash (``after``: last id processed) and its list of pairs."""
    return f"{PREFIX}{job_id}:dups", f"{PREFIX}{job_id}:dups:pairs"


# Written beside the groups, a minute longer than the record they belong to: a
# poll never sees a finished record whose groups have gone first.
GROUPS_GRACE_S = 60


@dataclass(frozen=True)
class Checkpoint:
    after: str | None
    pairs: list[tuple[str, str]]


class DuplicateStore:
    """Reads and writes one duplicates job's checkpoint and groups; safe to share."""

    def __init__(self, client: Any, ttl_s: int) -> None:
        self._r = client  # decode_responses=True
        self._ttl = ttl_s

    def load_checkpoint(self, job_id: str) -> Checkpoint:
        state_key, pairs_key = checkpoint_keys(job_id)
        pipe = self._r.pipeline(transaction=True)
        pipe.hgetall(state_key)
        pipe.lrange(pairs_key, 0, -1)
        state, raw = pipe.execute()
        pairs = [(a, b) for a, b in (item.split(" ") for item in raw)]
        return Checkpoint(state.get("after") or None, pairs)

    def save_checkpoint(self, job_id: str, after: str, pairs: Sequence[tuple[str, str]]) -> None:
        """Append ``pairs`` (found since the last checkpoint) and move ``after``, atomically."""
        state_key, pairs_key = checkpoint_keys(job_id)
        pipe = self._r.pipeline(transaction=True)
        if pairs:
            pipe.rpush(pairs_key, *(f"{a} {b}" for a, b in pairs))
        pipe.hset(state_key, "after", after)
        pipe.expire(state_key, self._ttl)
        pipe.expire(pairs_key, self._ttl)
        pipe.execute()

    def drop_checkpoint(self, job_id: str) -> None:
        self._r.delete(*checkpoint_keys(job_id))

    def save_groups(self, job_id: str, groups: Sequence[dict[str, Any]], keep_s: int) -> None:
        """Replace the job's groups with ``groups`` (sorted), kept ``keep_s`` (+ a grace)."""
        key = groups_key(job_id)
        partial = key + ":partial"
        self._r.delete(partial)
        for start in range(0, len(groups), 1000):
            batch = [json.dumps(g, separators=(",", ":")) for g in groups[start : start + 1000]]
            self._r.rpush(partial, *batch)
            self._r.expire(partial, self._ttl)
        pipe = self._r.pipeline(transaction=True)
        pipe.delete(key)
        if groups:
            pipe.rename(partial, key)
            pipe.expire(key, keep_s + GROUPS_GRACE_S)
        pipe.execute()

    def page(self, job_id: str, page: int, per_page: int) -> tuple[int, list[dict[str, Any]]]:
        """The number of groups and page ``page`` (from 1) of them."""
        key = groups_key(job_id)
        start = (page - 1) * per_page
        pipe = self._r.pipeline(transaction=False)
        pipe.llen(key)
        pipe.lrange(key, start, start + per_page - 1)
        total, raw = pipe.execute()
        return int(total), [json.loads(item) for item in raw]

    def delete(self, job_id: str) -> None:
        key = groups_key(job_id)
        self._r.delete(key, key + ":partial", *checkpoint_keys(job_id))
