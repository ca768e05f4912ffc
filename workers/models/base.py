"""What every model class of the model worker has in common, so one registry loads them all."""

from __future__ import annotations

from typing import Any, ClassVar

from visionnet.workers.models.info import ModelInfo, public_name
from visionnet.workers.models.loading import resolved_ref


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

    processor: Any

    @property
    def input_size(self) -> int | None:
        """The side the processor resizes to: decoding need not produce more (JPEG draft)."""
        size = getattr(self.processor, "size", None) or {}
        if not isinstance(size, dict):
            return None
        sides = [int(v) for k, v in size.items() if k in ("height", "width", "shortest_edge")]
        return max(sides) if sides else None
