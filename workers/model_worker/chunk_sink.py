"""An index chunk's sink: its rows committed (a real Milvus server takes many writers)
or staged in Redis for the one store writer, after waiting for room (backpressure).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from visionnet.workers.vectorstore.staging import StagedChunk, StagingArea

# Commits chunks straight to the store (``visionnet.workers.commit.commit_chunks``).
Commit = Callable[[list[StagedChunk]], object]


class ChunkSink:
    """Where an embedded chunk goes; ``deliver`` says whether a writer task must follow."""

    def __init__(
        self,
        *,
        direct: bool,
        commit: Commit,
        staging: StagingArea,
        max_staged: int,
        still_active: Callable[[], bool],
        max_wait_s: float,
    ) -> None:
        self.direct = direct
        self.commit = commit
        self.staging = staging
        self.max_staged = max_staged
        self.still_active = still_active
        self.max_wait_s = max_wait_s

    def deliver(self, chunk: StagedChunk) -> bool:
        """Commit or stage ``chunk``; its ``timings`` gain "handoff_wait" and
        "handoff" when staged. True: the writer's task has a chunk to commit."""
        if self.direct:
            # A real Milvus server takes several writers and logs each write itself.
            self.commit([chunk])
            return False
        # Hand-off: wait while the writer is behind, then stage compactly.
        chunk.timings["handoff_wait"] = self.staging.wait_for_room(
            self.max_staged, self.still_active, max_wait_s=self.max_wait_s
        )
        start = time.perf_counter()
        self.staging.put(chunk)
        chunk.timings["handoff"] = time.perf_counter() - start
        return True
