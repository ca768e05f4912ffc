"""Dynamic batching: concurrent small requests share one forward pass.

The interactive worker runs its tasks in threads (one per request in
flight). Each hands its images to the model's batcher and waits; the batcher's
own thread takes the first request, gathers whatever else arrives within
``max_wait_s`` (up to ``max_batch`` images), runs the model once on all of
them and gives each request its own rows back. On a GPU one pass of 16 images
costs about what one of 1 does; on 2 CPU cores the gain is smaller (see
bench/RESULTS.md). Every request learns the id of the pass that served it, so
the sharing can be seen (and tested) from outside.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Served(Generic[R]):
    rows: list[R]
    pass_id: str
    pass_size: int


class Batcher(Protocol[T, R]):
    def submit(self, items: list[T]) -> Served[R]: ...


class DirectRunner(Generic[T, R]):
    """No batching (``models.dynamic_batching = false``): each request is its own pass."""

    def __init__(self, run: Callable[[list[T]], Sequence[R]]) -> None:
        self._run = run

    def submit(self, items: list[T]) -> Served[R]:
        return Served(list(self._run(items)), uuid.uuid4().hex[:12], len(items))


class DynamicBatcher(Generic[T, R]):
    def __init__(
        self,
        run: Callable[[list[T]], Sequence[R]],
        *,
        max_batch: int,
        max_wait_s: float,
        name: str,
    ) -> None:
        self._run = run
        self._max_batch = max_batch
        self._max_wait_s = max_wait_s
        self._requests: queue.Queue[tuple[list[T], Future[Served[R]]]] = queue.Queue()
        thread = threading.Thread(target=self._loop, name=f"batcher-{name}", daemon=True)
        thread.start()

    def submit(self, items: list[T]) -> Served[R]:
        """Run ``items`` in the next shared pass; blocks until its rows are back."""
        future: Future[Served[R]] = Future()
        self._requests.put((items, future))
        return future.result()

    def _loop(self) -> None:
        while True:
            gathered = [self._requests.get()]
            size = len(gathered[0][0])
            deadline = time.monotonic() + self._max_wait_s
            while size < self._max_batch:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    more = self._requests.get(timeout=left)
                except queue.Empty:
                    break
                gathered.append(more)
                size += len(more[0])
            self._serve(gathered, size)

    def _serve(self, gathered: list[tuple[list[T], Future[Served[R]]]], size: int) -> None:
        items = [item for request, _ in gathered for item in request]
        pass_id = uuid.uuid4().hex[:12]
        try:
            rows = list(self._run(items))
        except BaseException as exc:  # each waiting request gets the error
            for _, future in gathered:
                future.set_exception(exc)
            return
        log.debug("pass %s: %d requests, %d images", pass_id, len(gathered), size)
        start = 0
        for request, future in gathered:
            future.set_result(Served(rows[start : start + len(request)], pass_id, size))
            start += len(request)
