"""Rate and ETA of a job, from its chunk reports: what a person watching a large job wants."""

from __future__ import annotations

import time

RATE_WINDOW_S = 60.0


def files_per_second(
    samples: list[tuple[float, int]],
    started_at: float | None,
    finished_at: float | None,
    done: int,
    now: float | None = None,
) -> float | None:
    """Files done per second over the last minute; over the whole run once finished."""
    if started_at is None:
        return None
    if finished_at is not None:
        elapsed = finished_at - started_at
        return done / elapsed if elapsed > 0 else None
    now = time.time() if now is None else now
    points = [(started_at, 0), *samples]
    window_start = max(now - RATE_WINDOW_S, started_at)
    base = max((p for p in points if p[0] <= window_start), key=lambda p: p[0], default=points[0])
    elapsed = now - base[0]
    if elapsed <= 0:
        return None
    return max(0, done - base[1]) / elapsed


def eta_seconds(rate: float | None, total: int, done: int, planning: bool) -> float | None:
    """Seconds left at the current rate; None while the total is still growing or no rate."""
    if planning or rate is None or rate <= 0:
        return None
    return max(0, total - done) / rate
