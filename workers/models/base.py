"""What every model class of the model worker has in common, so one registry loads them all."""

from __future__ import annotations

from typing import ClassVar

from visionnet.workers.models.info import ModelInfo


class ImageModel:
    """A model built from (ref, device); ``ref`` is a hub id, a directory or a ``builtin:`` name.

    Subclasses load in ``__init__`` (slow, once per process through the
    registry) and set ``ref`` to where the files came from and ``info``.
    """

    kind: ClassVar[str]
    ref: str
    info: ModelInfo

    def __init__(self, ref: str, device: str, *, offline: bool = False) -> None:
        self.ref = ref
        self.device = device
        self.offline = offline
