"""The loop that jobs over a list of images share: fetch, decode, run a model, batch by batch.

A file that cannot be read or decoded gets an error entry of its own and the
rest go on; progress is counted after every batch (the last one's with the
job's end), and a cancelled job stops at the next batch. Uploaded sources are
deleted by the task around it (``upload_blobs``), after its last attempt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PIL.Image import Image

from visionnet.core.jobs import JobState
from visionnet.workers.model_worker.context import ModelContext
from visionnet.workers.model_worker.reader import FileError, RawFile, decode
from visionnet.workers.model_worker.sources import Source, fetch


@dataclass(frozen=True)
class Decoded:
    raw: RawFile
    image: Image


# Given a batch of decoded images, one result entry (without "name") per image.
BatchFn = Callable[[list[Decoded]], list[dict[str, Any]]]


def process_images(
    ctx: ModelContext,
    job_id: str,
    sources: list[Source],
    run: BatchFn,
    draft: int | None = None,
) -> list[dict[str, Any]] | None:
    """One entry per source, in order: ``{"name", **run(...)}`` or ``{"name", "error"}``.

    None if the job stopped being active (cancelled, expired) on the way.
    """
    results: list[dict[str, Any]] = []
    failed = 0
    batch_size = ctx.settings.models.batch_size
    for start in range(0, len(sources), batch_size):
        # The task has just started the job: the first batch needs no second look.
        if start and not ctx.jobs.is_active(job_id):
            return None
        batch = sources[start : start + batch_size]
        decoded: list[Decoded] = []
        slots: list[int] = []
        for source in batch:
            raw = fetch(source, ctx)
            image = raw if isinstance(raw, FileError) else decode(raw, draft)
            name = source.get("path") or source.get("name", "upload")
            if isinstance(image, FileError):
                results.append({"name": name, "error": image.error})
                failed += 1
            else:
                assert isinstance(raw, RawFile)
                slots.append(len(results))
                results.append({"name": name})
                decoded.append(Decoded(raw, image))
        if decoded:
            for slot, entry in zip(slots, run(decoded), strict=True):
                results[slot].update(entry)
        # Absolute counts: a redelivered task starts over without counting twice.
        # The last batch's count goes with the job's end (``succeed``): one write.
        if start + batch_size < len(sources):
            ctx.jobs.set_progress(job_id, len(results), failed)
    return results


def succeed(ctx: ModelContext, job_id: str, entries: list[dict[str, Any]], result: Any) -> None:
    """End the job with its result and its final counts, in one record write."""
    failed = sum("error" in entry for entry in entries)
    ctx.jobs.transition(job_id, JobState.SUCCEEDED, result=result, done=len(entries), failed=failed)
