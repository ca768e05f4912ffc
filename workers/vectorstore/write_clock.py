"""Each collection's newest acknowledged write, as a Milvus timestamp kept in Redis.

A read on a real Milvus server at "Strong" consistency waits for the server's
newest time to reach every query node, one time tick or more (18-30 ms measured
here) even when nothing was written for hours. What a user needs is weaker and
exact: see every write acknowledged before the search was submitted. The
writers (the store writer, or model workers writing directly: several
processes) record their write's timestamp here before they report it, and a
reader asks Milvus for exactly that timestamp ("Customized" consistency): no
wait when nothing was written since, a wait for the one write otherwise.
Milvus' own "Session" level does this within one client; this is the same
across processes. Milvus Lite ignores consistency (it is always up to date).
"""

from __future__ import annotations

from typing import Any

KEY = "visionnet:store:write_ts"

# Keep the larger of two timestamps. They are 18-19 digit integers, beyond the
# exact range of Lua's double numbers, so they are compared as digit strings.
_RECORD_MAX = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local new = ARGV[2]
if (not cur) or #new > #cur or (#new == #cur and new > cur) then
  redis.call('HSET', KEYS[1], ARGV[1], new)
end
return 1
"""


class WriteClock:
    def __init__(self, client: Any) -> None:
        self._r = client
        self._record = client.register_script(_RECORD_MAX)

    def record(self, collection: str, ts: int) -> None:
        """Note a write at Milvus timestamp ``ts`` (keeps the newest of all writers')."""
        if ts > 0:
            self._record(keys=[KEY], args=[collection, str(ts)])

    def last(self, collection: str) -> int | None:
        """The newest recorded write, or None when none was recorded (then read strongly)."""
        value = self._r.hget(KEY, collection)
        return int(value) if value else None

    def forget(self, collection: str) -> None:
        self._r.hdel(KEY, collection)
