"""What every model class of the model worker has in common, so one registry loads them all."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar

from visionnet.workers.models.info import ModelInfo, public_name
from visionnet.workers.models.loading import resolved_ref

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")


def is_out_of_memory(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


class ImageModel:
    """A model built from (ref, device); ``ref`` is a hub id, a directory or a ``builtin:`` name.

    Subclasses load in ``__init__`` (slow, once per process through the
    registry) and set ``info``. ``ref`` is where the files came from (stays in
    the worker); ``name`` is what results, collections and users see.
    """

    kind: ClassVar[str]
    ref: str
    name: str
    info: ModelInfo

    def __init__(self, ref: str, device: str, *, offline: bool = False) -> None:
        self.ref = resolved_ref(ref)
        self.name = public_name(ref)
        self.device = device
        self.offline = offline
        # Largest batch known to fit; lowered when a forward pass runs out of memory.
        self.max_batch: int | None = None

    processor: Any

    @property
    def input_size(self) -> int | None:
        """The side the processor resizes to: decoding need not produce more (JPEG draft)."""
        size = getattr(self.processor, "size", None)
        if size is None:
            return None

        def side(key: str) -> Any:
            # A plain dict in older processors, transformers' SizeDict (attributes) in newer.
            return size.get(key) if isinstance(size, dict) else getattr(size, key, None)

        sides = [int(v) for k in ("height", "width", "shortest_edge") if (v := side(k))]
        return max(sides) if sides else None

    def fitting(
        self,
        run: Callable[[Sequence[T]], R],
        items: Sequence[T],
        join: Callable[[list[R]], R],
    ) -> R:
        """``run(items)``, split into halves (recursively) while a pass runs out of memory.

        A large batch of large images can exhaust a GPU that a smaller one fits; the
        chunk then finishes in smaller passes with the same results, and later
        calls start from the size that fitted.
        """
        if self.max_batch is not None and len(items) > self.max_batch:
            step = self.max_batch
            return join(
                [self.fitting(run, items[i : i + step], join) for i in range(0, len(items), step)]
            )
        try:
            return run(items)
        except (RuntimeError, MemoryError) as exc:
            if not is_out_of_memory(exc) or len(items) <= 1:
                raise
        self._free_cached_memory()
        half = (len(items) + 1) // 2
        self.max_batch = half
        log.warning("%s: out of memory at batch %d; retrying in halves", self.name, len(items))
        return join([self.fitting(run, items[:half], join), self.fitting(run, items[half:], join)])

    def _free_cached_memory(self) -> None:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()
