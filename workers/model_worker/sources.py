"""Where a job's images come from: a path under an allowed root, or an upload blob."""

from __future__ import annotations

from typing import TypedDict

from visionnet.workers.base import WorkerContext
from visionnet.workers.model_worker.reader import FileError, RawFile, read_path


class Source(TypedDict, total=False):
    path: str
    blob: str
    name: str


def fetch(source: Source, ctx: WorkerContext) -> RawFile | FileError:
    if "blob" in source:
        name = source.get("name") or "upload"
        data = ctx.blobs.get(source["blob"])
        if data is None:
            return FileError(name, "upload expired before the job ran")
        return RawFile(name, data)
    settings = ctx.settings
    return read_path(source["path"], settings.readable_roots, settings.jobs.max_file_bytes)
