"""Job records in Redis: the one place the web and the workers agree on a job.

Celery calls every id it does not know PENDING, so a job exists only if its
record does. Workers update counters atomically (Lua) so many chunk tasks can
report at once, and a chunk reported twice (a redelivered task) counts once.
Records expire ``ttl_s`` after their last write while the job runs. A finished
job keeps only what a poll reads (its record and its errors), for its type's
retention (``jobs.retention_s``); the bookkeeping that made its counts exact
goes at once, and later writes neither count nor extend its life.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import redis

from visionnet.core import metrics
from visionnet.core.jobtypes import job_type as job_type_spec

PREFIX = "visionnet:job:"
# Every job id, scored by creation time: the job list (pruned of expired records).
INDEX = "visionnet:jobs"
# Every job id, scored by when its record may have expired: what prunes INDEX,
# whose oldest entries may be live (an index job kept for a day behind an hour's
# classify jobs), so it cannot be pruned from its old end.
EXPIRY = "visionnet:jobs:expiry"
# Ids pruned from the job list per job created: more than one, so it catches up.
PRUNE_PER_CREATE = 8


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})

# KEYS: job hash, chunk set, error list, planned set, rate samples, metrics hash.
# ARGV: chunk no, indexed, skipped, failed, now, ttl, max errors, stages JSON,
# worker name, moved (of the skipped), errors JSON...
_RECORD_CHUNK = (
    """
local job, chunks, errs = KEYS[1], KEYS[2], KEYS[3]
local state = redis.call('HGET', job, 'state')
if not state then return -1 end
-- A finished job's counts are final and its chunk set is gone: a late report
-- (a chunk in flight at a cancel, a redelivered duplicate) must not count again.
if state == 'succeeded' or state == 'failed' or state == 'cancelled' then return 0 end
redis.call('HSET', job, 'updated_at', ARGV[5])
if tonumber(ARGV[1]) >= 0 and redis.call('SADD', chunks, ARGV[1]) == 1 then
  redis.call('HINCRBY', job, 'indexed', ARGV[2])
  redis.call('HINCRBY', job, 'skipped', ARGV[3])
  redis.call('HINCRBY', job, 'failed', ARGV[4])
  local done_now = redis.call('HINCRBY', job, 'done', ARGV[2] + ARGV[3] + ARGV[4])
  redis.call('HINCRBY', job, 'chunks_done', 1)
  -- (time, done) samples, for the rate over the last minute and the ETA.
  redis.call('RPUSH', KEYS[5], ARGV[5] .. ' ' .. done_now)
  redis.call('LTRIM', KEYS[5], -256, -1)
  local stages = cjson.decode(ARGV[8])
  for stage, seconds in pairs(stages) do
    redis.call('HINCRBYFLOAT', job, 'stage_s:' .. stage, seconds)
  end
  -- Service-wide counters (visionnet.core.metrics), once per chunk like the rest.
  local m = KEYS[6]
  redis.call('HINCRBY', m, 'images:indexed', ARGV[2])
  redis.call('HINCRBY', m, 'images:skipped', ARGV[3])
  redis.call('HINCRBY', m, 'images:failed', ARGV[4])
"""
    + metrics.LUA_COUNT_CHUNK
    + """
  -- Which worker embedded how many chunks (several hosts can share one job).
  if ARGV[9] ~= '' then redis.call('HINCRBY', job, 'worker:' .. ARGV[9], 1) end
  if tonumber(ARGV[10]) > 0 then redis.call('HINCRBY', job, 'moved', ARGV[10]) end
  local keep = tonumber(ARGV[7])
  for i = 11, #ARGV do
    if redis.call('LLEN', errs) < keep then redis.call('RPUSH', errs, ARGV[i]) end
  end
end
local ttl = tonumber(ARGV[6])
redis.call('EXPIRE', job, ttl)
redis.call('EXPIRE', chunks, ttl)
redis.call('EXPIRE', errs, ttl)
redis.call('EXPIRE', KEYS[4], ttl)
redis.call('EXPIRE', KEYS[5], ttl)
if state ~= 'running' and state ~= 'queued' then return 0 end
if redis.call('HGET', job, 'planned') ~= '1' then return 0 end
local total = tonumber(redis.call('HGET', job, 'chunks_total') or '0')
local done = tonumber(redis.call('HGET', job, 'chunks_done') or '0')
if done < total then return 0 end
redis.call('HSET', job, 'state', 'succeeded', 'finished_at', ARGV[5])
redis.call('HINCRBY', KEYS[6], 'finished:' .. redis.call('HGET', job, 'type') .. ':succeeded', 1)
return 1
"""
)

# Sets the state only if the job is not final yet.
# KEYS: job, metrics hash. ARGV: state, now, ttl, [k, v]...
_TRANSITION = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return -1 end
if state == 'succeeded' or state == 'failed' or state == 'cancelled' then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[1])
if ARGV[1] == 'succeeded' or ARGV[1] == 'failed' or ARGV[1] == 'cancelled' then
  redis.call('HSET', KEYS[1], 'finished_at', ARGV[2])
  local kind = redis.call('HGET', KEYS[1], 'type') or 'unknown'
  redis.call('HINCRBY', KEYS[2], 'finished:' .. kind .. ':' .. ARGV[1], 1)
end
for i = 4, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
"""


# Every progress write: only to a record that exists (never recreate an expired
# or unknown job as a stateless hash), and it refreshes the record's lifetime.
# KEYS: job. ARGV: now, ttl, [field, value]...
_SET_FIELDS = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return -1 end
redis.call('HSET', KEYS[1], 'updated_at', ARGV[1])
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
-- A finished record keeps its retention.
if state ~= 'succeeded' and state ~= 'failed' and state ~= 'cancelled' then
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
end
return 1
"""

# Counts a planned chunk once, however often the planner runs (it acks late
# and is redelivered after a crash). KEYS: job, planned set. ARGV: chunk no,
# files, now, ttl.
_PLAN_CHUNK = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return -1 end
if state == 'succeeded' or state == 'failed' or state == 'cancelled' then return 0 end
if redis.call('SADD', KEYS[2], ARGV[1]) == 1 then
  redis.call('HINCRBY', KEYS[1], 'total', ARGV[2])
  redis.call('HINCRBY', KEYS[1], 'chunks_total', 1)
end
redis.call('HSET', KEYS[1], 'updated_at', ARGV[3])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[4]))
return 1
"""

# Replaces a chunk whose process died on every delivery by two halves, once:
# the halves are planned, the chunk itself is marked reported without counting
# (so a late report of it is ignored), and one more chunk is expected. Returns
# 1 when it split now, 2 when it had split before, 0 when the chunk had
# reported already or the job is over (nothing to split). KEYS: job, chunk set, planned set.
# ARGV: chunk no, half a, half b, now, ttl.
_SPLIT_CHUNK = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return -1 end
if state == 'succeeded' or state == 'failed' or state == 'cancelled' then return 0 end
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then
  if redis.call('SISMEMBER', KEYS[3], 'split:' .. ARGV[1]) == 1 then return 2 end
  return 0
end
redis.call('SADD', KEYS[3], 'split:' .. ARGV[1], ARGV[2], ARGV[3])
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[1], 'chunks_total', 1)
redis.call('HSET', KEYS[1], 'updated_at', ARGV[4])
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], tonumber(ARGV[5])) end
return 1
"""

# The first decision about a chunk wins: a writer re-run after a crash must
# report what the first run decided. KEYS: decision. ARGV: value, ttl.
# A chunk's decision of which of its rows are new, made once. KEYS[1] is the
# chunk's decision, KEYS[2] the job's set of rows claimed by a decided but not
# yet written chunk; ARGV[1] the TTL, ARGV[2..] the ids not found in the store.
# An id claimed by another chunk of the job is not new here: that chunk writes
# it, so a copy of a file in two chunks counts once even when one is redelivered.
_DECIDE_ONCE = """
local got = redis.call('GET', KEYS[1])
if got then return got end
local won = {}
for i = 2, #ARGV do
  if redis.call('SADD', KEYS[2], ARGV[i]) == 1 then won[#won + 1] = ARGV[i] end
end
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[1]))
local value = '[]'
if #won > 0 then value = cjson.encode(won) end
redis.call('SET', KEYS[1], value, 'EX', tonumber(ARGV[1]))
return value
"""

DELIVERY_PREFIX = "visionnet:delivery:"

# What an index walk saw besides images, counted once per folder however often a
# stepped or redelivered planner reads it. KEYS: job, seen set, error list. ARGV:
# now, ttl, max errors, skipped ([{folder, skipped: {ext: n}}] JSON), errors
# ([{path, error}] JSON). A folder that cannot be read is one failed entry of the job.
_RECORD_WALK = """
local job, seen, errs = KEYS[1], KEYS[2], KEYS[3]
local state = redis.call('HGET', job, 'state')
if not state then return -1 end
if state ~= 'running' and state ~= 'queued' then return 0 end
for _, f in ipairs(cjson.decode(ARGV[4])) do
  if redis.call('SADD', seen, 's:' .. f.folder) == 1 then
    for ext, n in pairs(f.skipped) do redis.call('HINCRBY', job, 'skipped_ext:' .. ext, n) end
  end
end
for _, e in ipairs(cjson.decode(ARGV[5])) do
  if redis.call('SADD', seen, 'e:' .. e.path) == 1 then
    redis.call('HINCRBY', job, 'total', 1)
    redis.call('HINCRBY', job, 'done', 1)
    redis.call('HINCRBY', job, 'failed', 1)
    if redis.call('LLEN', errs) < tonumber(ARGV[3]) then
      redis.call('RPUSH', errs, cjson.encode(e))
    end
  end
end
redis.call('HSET', job, 'updated_at', ARGV[1])
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], tonumber(ARGV[2])) end
return 1
"""

# A job that just finished keeps only what a poll reads: its record and its
# errors, for its type's retention. Its bookkeeping goes: the chunk, planned
# and claimed sets, the rate samples, each chunk's decision, and the delivery
# counters of its root task (sent under the job's id; retry r counts under
# ``:r``, and retries run in turn, so they are 0, 1, ... with no gap). Chunk
# tasks' counters (random task ids) expire with ``ttl_s``. KEYS: job, expiry
# index. ARGV: job id, retention by type (JSON), default retention, now.
_FINISH = (
    """
local job = KEYS[1]
local kind = redis.call('HGET', job, 'type')
if not kind then return -1 end
for _, n in ipairs(redis.call('SUNION', job .. ':planned', job .. ':chunks')) do
  redis.call('DEL', job .. ':decision:' .. n)
end
redis.call('DEL', job .. ':chunks', job .. ':planned', job .. ':rate', job .. ':claimed')
local r = 0
while redis.call('DEL', '"""
    + DELIVERY_PREFIX
    + """' .. ARGV[1] .. ':' .. r) == 1 do r = r + 1 end
local keep = tonumber(cjson.decode(ARGV[2])[kind] or ARGV[3])
redis.call('EXPIRE', job, keep)
redis.call('EXPIRE', job .. ':errors', keep)
redis.call('EXPIRE', job .. ':results', keep)
redis.call('ZADD', KEYS[2], tonumber(ARGV[4]) + keep, ARGV[1])
return keep
"""
)

# Drops from the job list the ids whose record has expired, a few per call,
# oldest expiry first; a record still there (a running job's is extended by
# each write) is looked at again when it may have gone. KEYS: job list, expiry
# index. ARGV: now, most ids, record key prefix.
_PRUNE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(due) do
  local ttl = redis.call('TTL', ARGV[3] .. id)
  if ttl == -2 then
    redis.call('ZREM', KEYS[1], id)
    redis.call('ZREM', KEYS[2], id)
  elseif ttl == -1 then
    redis.call('ZREM', KEYS[2], id)
  else
    redis.call('ZADD', KEYS[2], tonumber(ARGV[1]) + ttl, id)
  end
end
return #due
"""

# Per-file errors that no retry can change: the bytes themselves are the problem.
PERMANENT_ERRORS = (
    "not an image format we read",
    "too many pixels",
    "corrupt image",
    "refused archive entry",
    # The reader's refusals (reader.py) and a folder no retry of paths can walk.
    "not a regular file",
    "file is larger than",
    "cannot read folder",
)


def is_permanent(error: str) -> bool:
    return error.startswith(PERMANENT_ERRORS)


def is_retryable(entry: dict[str, Any]) -> bool:
    """Whether a retry of the job runs this failed entry again: as its ``retryable``
    says (a URL's download, issue 27), else unless its reason is permanent."""
    said = entry.get("retryable")
    return bool(said) if said is not None else not is_permanent(str(entry["error"]))


JOB_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")


def is_job_id(value: str) -> bool:
    """Only ids this module makes reach Redis keys (no ``x:chunks`` lookalikes)."""
    return bool(JOB_ID_PATTERN.fullmatch(value))


def new_job_id() -> str:
    return uuid.uuid4().hex


def _now() -> str:
    return f"{time.time():.3f}"


@dataclass(frozen=True)
class ChunkReport:
    """What one index chunk did, reported once by the store writer."""

    chunk_no: int
    indexed: int
    skipped: int
    failed: int
    errors: list[dict[str, Any]]
    # Seconds this chunk spent per stage, summed into the job (once per chunk).
    stages: dict[str, float] = field(default_factory=dict)
    # The Celery node that embedded it (``models@host``); "" when none did.
    worker: str = ""
    # Of the skipped: files found at a new path, their stored path updated (not embedded).
    moved: int = 0


class JobStore:
    """Reads and writes job records; safe to share across threads."""

    def __init__(
        self,
        client: redis.Redis,
        ttl_s: int,
        max_errors: int = 1000,
        retention_s: Mapping[str, int] | None = None,
    ) -> None:
        """``ttl_s``: a running job's record lives this long after its last write;
        ``retention_s``: a finished one's, by job type (``ttl_s`` for a type not given).
        """
        self._r = client
        self._ttl = ttl_s
        self._max_errors = max_errors
        self._retention = json.dumps(dict(retention_s or {}))
        self._record_chunk = client.register_script(_RECORD_CHUNK)
        self._transition = client.register_script(_TRANSITION)
        self._set_fields = client.register_script(_SET_FIELDS)
        self._plan_chunk = client.register_script(_PLAN_CHUNK)
        self._decide_once = client.register_script(_DECIDE_ONCE)
        self._record_walk = client.register_script(_RECORD_WALK)
        self._finish = client.register_script(_FINISH)
        self._prune = client.register_script(_PRUNE)
        self._split_chunk = client.register_script(_SPLIT_CHUNK)

    @staticmethod
    def key(job_id: str) -> str:
        return PREFIX + job_id

    def create(
        self, job_type: str, params: Mapping[str, Any], total: int = 0, job_id: str | None = None
    ) -> str:
        """Record a new queued job of a type from the job type table; returns its id."""
        spec = job_type_spec(job_type)
        job_id = job_id or new_job_id()
        key = self.key(job_id)
        pipe = self._r.pipeline()
        pipe.hset(
            key,
            mapping={
                "id": job_id,
                "type": spec.name,
                "state": JobState.QUEUED.value,
                "created_at": _now(),
                "total": total,
                "done": 0,
                "failed": 0,
                "params": json.dumps(params),
            },
        )
        pipe.expire(key, self._ttl)
        now = time.time()
        pipe.zadd(INDEX, {job_id: now})
        pipe.zadd(EXPIRY, {job_id: now + self._ttl})
        pipe.hincrby(metrics.KEY, f"submitted:{spec.name}", 1)
        self._prune(keys=[INDEX, EXPIRY], args=[now, PRUNE_PER_CREATE, PREFIX], client=pipe)
        pipe.execute()
        return job_id

    def recent(
        self,
        *,
        job_type: str | None = None,
        state: JobState | None = None,
        limit: int = 50,
        before: float | None = None,
    ) -> tuple[list[dict[str, str]], float | None]:
        """Newest first, created before ``before``; returns records and the next cursor.

        Filters apply to the records read, in pages of the index, so a rare
        type or state costs a longer walk, never a wrong answer. Ids whose
        record expired are dropped from the index on the way.
        """
        out: list[dict[str, str]] = []
        high: str = f"({before!r}" if before is not None else "+inf"
        while len(out) < limit:
            page: list[tuple[str, float]] = self._r.zrevrangebyscore(  # type: ignore[assignment]
                INDEX, high, "-inf", start=0, num=max(limit * 2, 64), withscores=True
            )
            if not page:
                return out, None
            pipe = self._r.pipeline()
            for job_id, _ in page:
                pipe.hgetall(self.key(job_id))
            records = pipe.execute()
            gone = [job_id for (job_id, _), rec in zip(page, records, strict=True) if not rec]
            if gone:
                self._r.zrem(INDEX, *gone)
            for (_job_id, score), rec in zip(page, records, strict=True):
                high = f"({score!r}"
                if not rec:
                    continue
                if job_type and rec.get("type") != job_type:
                    continue
                if state and rec.get("state") != state.value:
                    continue
                out.append(rec)
                if len(out) == limit:
                    return out, score
        return out, None

    def rate_samples(self, job_id: str) -> list[tuple[float, int]]:
        """(time, files done) after each chunk report, oldest first (the last 256)."""
        raw: list[str] = self._r.lrange(self.key(job_id) + ":rate", 0, -1)  # type: ignore[assignment]
        return [(float(t), int(d)) for t, d in (item.split() for item in raw)]

    def ping(self) -> bool:
        return bool(self._r.ping())

    def get(self, job_id: str) -> dict[str, str] | None:
        data: dict[str, str] = self._r.hgetall(self.key(job_id))  # type: ignore[assignment]
        return data or None

    def append_results(self, job_id: str, entries: Sequence[Mapping[str, Any]]) -> int:
        """Add a batch of a job's result entries, in order; how many there are now.

        For a result too large for the record and wanted while the job runs (a
        search of many query images): read in pages (``results``), kept as long
        as the record.
        """
        key = self.key(job_id) + ":results"
        pipe = self._r.pipeline()
        pipe.rpush(key, *(json.dumps(entry) for entry in entries))
        pipe.expire(key, self._ttl)
        return int(pipe.execute()[0])

    def results_count(self, job_id: str) -> int:
        return int(self._r.llen(self.key(job_id) + ":results"))

    def results(self, job_id: str, after: int, limit: int) -> list[dict[str, Any]]:
        """Entries ``after`` .. ``after + limit - 1`` (0-based), oldest first."""
        key = self.key(job_id) + ":results"
        raw: list[str] = self._r.lrange(key, after, after + limit - 1)  # type: ignore[assignment]
        return [json.loads(item) for item in raw]

    def errors(self, job_id: str) -> list[dict[str, Any]]:
        raw: list[str] = self._r.lrange(self.key(job_id) + ":errors", 0, -1)  # type: ignore[assignment]
        return [json.loads(item) for item in raw]

    def state(self, job_id: str) -> JobState | None:
        value = self._r.hget(self.key(job_id), "state")
        return JobState(value) if isinstance(value, str) else None

    def is_active(self, job_id: str) -> bool:
        """False once a job is cancelled, finished or expired: its tasks stop early."""
        state = self.state(job_id)
        return state is not None and state not in FINAL_STATES

    def transition(self, job_id: str, state: JobState, **fields: Any) -> bool:
        """Move a job to ``state`` unless it is final already; True if it moved."""
        args: list[Any] = [state.value, _now(), self._ttl]
        for name, value in fields.items():
            args += [name, value if isinstance(value, str | int | float) else json.dumps(value)]
        moved = int(self._transition(keys=[self.key(job_id), metrics.KEY], args=args)) == 1
        if moved and state in FINAL_STATES:
            self.finished(job_id)
        return moved

    def finished(self, job_id: str) -> int:
        """Shrink a finished job to what a poll reads, kept for its type's retention.

        Called once a job reached a final state; a crash before it leaves the
        bookkeeping to expire with ``ttl_s``. Returns the retention set (-1: no job).
        """
        keys = [self.key(job_id), EXPIRY]
        return int(self._finish(keys=keys, args=[job_id, self._retention, self._ttl, time.time()]))

    def start(self, job_id: str, **fields: Any) -> bool:
        """Mark a job running (setting ``fields`` in the same write); False if it was
        cancelled or expired before it ran."""
        return self.transition(job_id, JobState.RUNNING, started_at=_now(), **fields)

    def set_fields(self, job_id: str, **fields: int | str) -> bool:
        """Update fields of an existing record (refreshing its lifetime); False if it is gone."""
        args: list[Any] = [_now(), self._ttl]
        for name, value in fields.items():
            args += [name, value]
        return int(self._set_fields(keys=[self.key(job_id)], args=args)) == 1

    def set_progress(self, job_id: str, done: int, failed: int = 0) -> bool:
        """Absolute counts of a job run by one task: a redelivered task counts from zero again."""
        return self.set_fields(job_id, done=done, failed=failed)

    def plan_chunk(self, job_id: str, chunk_no: int, files: int) -> bool:
        """Count chunk ``chunk_no`` of ``files`` files into the totals, once."""
        keys = [self.key(job_id), self.key(job_id) + ":planned"]
        return int(self._plan_chunk(keys=keys, args=[chunk_no, files, _now(), self._ttl])) == 1

    def decide_once(self, job_id: str, chunk_no: int, not_stored: list[str]) -> set[str]:
        """Which of ``not_stored`` chunk ``chunk_no`` writes: decided on its first run only.

        A re-run after a crash between the write and the report gets the first
        decision back, so rows it stored then still count as indexed; an id
        that another chunk of the job decided to write is left to that chunk.
        """
        keys = [f"{self.key(job_id)}:decision:{chunk_no}", f"{self.key(job_id)}:claimed"]
        decided = self._decide_once(keys=keys, args=[self._ttl, *not_stored])
        return set(json.loads(decided))

    def release_claims(self, job_id: str, ids: list[str]) -> None:
        """Rows now stored need no claim: later chunks find them in the store."""
        if ids:
            self._r.srem(f"{self.key(job_id)}:claimed", *ids)

    def count_delivery(self, task_id: str, retries: int) -> int:
        """How many times this run of a task (its id and retry number) has started."""
        key = f"{DELIVERY_PREFIX}{task_id}:{retries}"
        pipe = self._r.pipeline()
        pipe.incr(key)
        pipe.expire(key, self._ttl)
        count, _ = pipe.execute()
        return int(count)

    def stalled_since(self, record: dict[str, str]) -> float | None:
        """Seconds since a running job last made progress; None unless running."""
        if record.get("state") != JobState.RUNNING.value:
            return None
        last = max(float(record.get(k) or 0) for k in ("started_at", "updated_at", "created_at"))
        return max(0.0, time.time() - last)

    def record_chunk(self, job_id: str, report: ChunkReport) -> bool:
        """Count one chunk once; True if the job ended."""
        key = self.key(job_id)
        args: list[Any] = [
            report.chunk_no,
            report.indexed,
            report.skipped,
            report.failed,
            _now(),
            self._ttl,
            self._max_errors,
            json.dumps(report.stages),
            report.worker,
            report.moved,
            *[json.dumps(e) for e in report.errors],
        ]
        keys = [key, *self._aux_keys(job_id), metrics.KEY]
        ended = int(self._record_chunk(keys=keys, args=args)) == 1
        if ended:
            self.finished(job_id)
        return ended

    def split_chunk(self, job_id: str, chunk_no: int, halves: tuple[int, int]) -> int:
        """Replace chunk ``chunk_no`` by the chunks ``halves`` (its files, split), once.

        1: split now; 2: split before (a re-run: send the halves again); 0: the
        chunk reported already; -1: no such job. The files total is unchanged.
        """
        keys = [self.key(job_id), self.key(job_id) + ":chunks", self.key(job_id) + ":planned"]
        args: list[Any] = [chunk_no, *halves, _now(), self._ttl]
        return int(self._split_chunk(keys=keys, args=args))

    def finish_planning(self, job_id: str) -> bool:
        """Mark the walk complete; finishes the job at once if every chunk reported."""
        if not self.set_fields(job_id, planned=1):
            return False
        # An empty report for a chunk number no planner uses re-runs the completion check.
        return self.record_chunk(job_id, ChunkReport(-1, 0, 0, 0, []))

    def record_walk(
        self,
        job_id: str,
        errors: list[dict[str, str]],
        skipped: dict[str, dict[str, int]],
    ) -> bool:
        """Count what a walk step saw besides images, once per folder: ``errors``
        (folders it could not read, one failed entry each) and ``skipped`` (per
        folder, files left out per extension; the job's ``skipped_ext:<ext>``)."""
        if not errors and not skipped:
            return True
        key = self.key(job_id)
        per_folder = [{"folder": f, "skipped": counts} for f, counts in skipped.items()]
        args: list[str | int] = [
            _now(),
            self._ttl,
            self._max_errors,
            json.dumps(per_folder),
            json.dumps(errors),
        ]
        out = self._record_walk(keys=[key, key + ":walked", key + ":errors"], args=args)
        return int(out) == 1

    def counters(self) -> dict[str, float]:
        """The service-wide counters (``visionnet.core.metrics``)."""
        return metrics.read(self._r)

    def queue_depths(self, queues: Sequence[str]) -> dict[str, int]:
        """Messages waiting per queue (the Redis broker keeps each queue as a list)."""
        pipe = self._r.pipeline(transaction=False)
        for queue in queues:
            pipe.llen(queue)
        return {q: int(n) for q, n in zip(queues, pipe.execute(), strict=True)}

    def delete(self, job_id: str) -> None:
        """Remove a job's record; workers that still hold its tasks find no record and stop."""
        key = self.key(job_id)
        self._r.delete(
            key, *self._aux_keys(job_id), key + ":claimed", key + ":walked", key + ":results"
        )
        self._r.zrem(INDEX, job_id)
        self._r.zrem(EXPIRY, job_id)

    def _aux_keys(self, job_id: str) -> list[str]:
        key = self.key(job_id)
        return [key + ":chunks", key + ":errors", key + ":planned", key + ":rate"]
