"""Service counters kept in Redis, so every web process serves the same ``/metrics``.

The web runs several processes and the work happens in workers on other
hosts, so in-process Prometheus counters would each see a part. Instead the
Lua scripts that already count chunks and move jobs between states
(``visionnet.core.jobs``) add to one Redis hash in the same atomic step: exact,
counted once, whoever did the work. The web turns the hash into Prometheus
families at scrape time (``visionnet.web.metrics``).
"""

from __future__ import annotations

from typing import Any

KEY = "visionnet:metrics"

# Upper bounds (seconds) of the per-chunk stage histograms; +Inf is the count.
STAGE_BUCKETS = ("0.01", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30", "60")

# Lua, inside the chunk report, once per counted chunk: ``m`` the hash,
# ``stages`` the decoded stage seconds.
LUA_COUNT_CHUNK = (
    """
local buckets = {"""
    + ",".join(f"'{b}'" for b in STAGE_BUCKETS)
    + """}
for stage, seconds in pairs(stages) do
  redis.call('HINCRBYFLOAT', m, 'stage_sum:' .. stage, seconds)
  redis.call('HINCRBY', m, 'stage_count:' .. stage, 1)
  for _, b in ipairs(buckets) do
    if seconds <= tonumber(b) then redis.call('HINCRBY', m, 'stage_le:' .. stage .. ':' .. b, 1) end
  end
end
"""
)


def read(client: Any) -> dict[str, float]:
    """The counters, by name (``submitted:index``, ``stage_le:embed:0.5``, ...)."""
    out: dict[str, float] = {}
    for k, v in client.hgetall(KEY).items():
        name = k.decode() if isinstance(k, bytes) else k
        out[name] = float(v.decode() if isinstance(v, bytes) else v)
    return out
