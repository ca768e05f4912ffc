"""Embed job: each image's feature vector, returned to the caller.

The same embedder as index and search, so a vector here equals the one an
index job stores for the same file (same content id).
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

from visionnet.core.jobs import JobState
from visionnet.core.jobtypes import EmbedParams, job_type
from visionnet.workers.model_worker.context import ModelTask
from visionnet.workers.model_worker.images import Decoded, process_images, succeed
from visionnet.workers.model_worker.sources import Source
from visionnet.workers.model_worker.upload_blobs import released_after_last_attempt, upload_keys
from visionnet.workers.models.info import RANDOM_WEIGHTS_NOTICE
from visionnet.workers.models.loading import ModelUnavailableError


@shared_task(name=job_type("embed").task, base=ModelTask, bind=True, acks_late=True)
def embed(self: ModelTask, *, job_id: str, sources: list[Source], params: dict[str, Any]) -> None:
    # Uploads go after the last attempt (success, verdict, cancel), never before a retry.
    with released_after_last_attempt(self, self.ctx.blobs, upload_keys(sources)):
        _embed(self, job_id, sources, params)


def _embed(self: ModelTask, job_id: str, sources: list[Source], params: dict[str, Any]) -> None:
    EmbedParams.model_validate(params)
    ctx = self.ctx
    if not ctx.jobs.start(job_id):
        return
    try:
        model = ctx.embedder()
    except ModelUnavailableError as exc:
        ctx.jobs.transition(job_id, JobState.FAILED, error=str(exc))
        return

    batcher = ctx.embed_batcher()
    passes: list[str] = []

    def run(batch: list[Decoded]) -> list[dict[str, Any]]:
        served = batcher.submit([d.image for d in batch])
        passes.append(served.pass_id)
        vectors = served.rows
        return [
            {"id": d.raw.content_id, "vector": [float(v) for v in row]}
            for d, row in zip(batch, vectors, strict=True)
        ]

    images = process_images(ctx, job_id, sources, run, model.input_size)
    if images is None:
        return
    result: dict[str, Any] = {
        "model": model.info,
        "dim": next((len(im["vector"]) for im in images if "vector" in im), None),
        "normalized": model.normalized,
        "images": images,
        "forward_passes": passes,
    }
    if model.info["random_weights"]:
        result["notice"] = RANDOM_WEIGHTS_NOTICE
    succeed(ctx, job_id, images, result)
