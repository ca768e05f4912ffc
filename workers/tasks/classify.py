"""Classify task: top-k labels per image, progress after every batch."""

from __future__ import annotations

import time
from typing import Any

from celery import shared_task

from visionnet.jobs import JobState
from visionnet.queues import CLASSIFY
from workers.context import VisionTask
from workers.models.info import RANDOM_WEIGHTS_NOTICE
from workers.models.loading import ModelUnavailableError
from workers.pipeline.reader import FileError, decode
from workers.pipeline.sources import Source, fetch


@shared_task(name=CLASSIFY, base=VisionTask, bind=True, acks_late=True)
def classify(self: VisionTask, *, job_id: str, sources: list[Source], top_k: int) -> None:
    ctx = self.ctx
    if not ctx.jobs.transition(job_id, JobState.RUNNING, started_at=f"{time.time():.3f}"):
        return  # cancelled or expired before it ran
    try:
        model = ctx.models.classifier()
    except ModelUnavailableError as exc:
        ctx.jobs.transition(job_id, JobState.FAILED, error=str(exc))
        return
    results: list[dict[str, Any]] = []
    batch_size = ctx.settings.models.batch_size
    for start in range(0, len(sources), batch_size):
        if not ctx.jobs.is_active(job_id):
            return
        batch = sources[start : start + batch_size]
        images, slots = [], []
        failed = 0
        for source in batch:
            raw = fetch(source, ctx)
            image = raw if isinstance(raw, FileError) else decode(raw)
            name = source.get("path") or source.get("name", "upload")
            if isinstance(image, FileError):
                results.append({"name": name, "error": image.error})
                failed += 1
            else:
                slots.append(len(results))
                results.append({"name": name, "predictions": []})
                images.append(image)
        if images:
            for slot, preds in zip(slots, model.predict(images, top_k), strict=True):
                results[slot]["predictions"] = [p.__dict__ for p in preds]
        ctx.jobs.add_progress(job_id, len(batch), failed)
    ctx.blobs.delete(*[s["blob"] for s in sources if "blob" in s])
    result: dict[str, Any] = {"model": model.info, "images": results}
    if model.info["random_weights"]:
        result["notice"] = RANDOM_WEIGHTS_NOTICE
    ctx.jobs.transition(job_id, JobState.SUCCEEDED, result=result)
