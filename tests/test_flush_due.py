"""The store writer's flush policy for Milvus Lite (``store_writer/flush_due.py``).

The policy is arithmetic on counts and a clock; the clock here is a number the
test moves. ``test_lite_flush.py`` runs it in the real writer against Milvus Lite.
"""

from __future__ import annotations

from visionnet.workers.commit import CommitStats
from visionnet.workers.store_writer.flush_due import UnflushedRows


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def commit(written: dict[str, int], ended: set[str] | None = None) -> CommitStats:
    return CommitStats(1, sum(written.values()), 0.01, written, frozenset(ended or ()))


def test_a_collection_is_flushed_once_its_rows_reach_the_threshold() -> None:
    rows = UnflushedRows(Clock())
    for _ in range(3):
        stats = commit({"a": 256})
        rows.wrote(stats.written)
        assert rows.due(stats, threshold=1000) == []
    stats = commit({"a": 256, "b": 10})
    rows.wrote(stats.written)
    assert rows.due(stats, threshold=1000) == ["a"]  # 1,024 rows; b has 10
    rows.flushed("a")
    stats = commit({"a": 256})
    rows.wrote(stats.written)
    assert rows.due(stats, threshold=1000) == []  # counted again from the flush


def test_a_job_that_ends_flushes_its_collection_and_zero_flushes_every_commit() -> None:
    rows = UnflushedRows(Clock())
    stats = commit({"a": 16}, ended={"a"})
    rows.wrote(stats.written)
    assert rows.due(stats, threshold=10_000) == ["a"]
    rows.flushed("a")
    # A job whose last chunk stored nothing new: its collection is flushed only
    # if something is left unflushed.
    assert rows.due(commit({}, ended={"a"}), threshold=10_000) == []
    stats = commit({"b": 1})
    rows.wrote(stats.written)
    assert rows.due(stats, threshold=0) == ["b"]


def test_a_collection_this_writer_never_wrote_counts_as_unflushed() -> None:
    """A writer that took over from one that died: what it left may be unflushed."""
    rows = UnflushedRows(Clock())
    assert rows.pending("left_by_another")
    assert rows.due(commit({}, ended={"left_by_another"}), threshold=10_000) == ["left_by_another"]
    assert rows.timer_fired("left_by_another", idle_s=2.0) == 0.0  # flush now


def test_the_delayed_flush_waits_until_the_collection_went_idle() -> None:
    clock = Clock()
    rows = UnflushedRows(clock)
    rows.wrote({"a": 16})
    assert rows.needs_timer(["a"]) == ["a"]
    rows.wrote({"a": 16})
    assert rows.needs_timer(["a"]) == []  # one delayed flush waits already
    clock.now += 1.5
    rows.wrote({"a": 16})  # written 0.5 s before the timer comes
    clock.now += 0.5
    assert rows.timer_fired("a", idle_s=2.0) == 1.5  # sent again for the rest
    assert rows.needs_timer(["a"]) == []  # the one sent again counts
    clock.now += 1.5
    assert rows.timer_fired("a", idle_s=2.0) == 0.0
    assert rows.pending("a")
    assert rows.unflushed() == ["a"]
    rows.flushed("a")
    assert not rows.pending("a")
    assert rows.unflushed() == []
    assert rows.needs_timer(["a"]) == []  # nothing left to flush: no timer


def test_a_dropped_collection_has_nothing_to_flush() -> None:
    rows = UnflushedRows(Clock())
    rows.wrote({"a": 5})
    rows.forget("a")
    assert not rows.pending("a")
    assert rows.timer_fired("a", idle_s=2.0) == 0.0
