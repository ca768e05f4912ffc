"""Classify job: top-k labels per image, progress after every batch."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from visionnet.core.jobs import JobState
from visionnet.core.jobtypes import ClassifyParams, job_type
from visionnet.workers.model_worker.context import ModelTask
from visionnet.workers.model_worker.images import Decoded, process_images, succeed
from visionnet.workers.model_worker.sources import Source
from visionnet.workers.model_worker.upload_blobs import released_after_last_attempt, upload_keys
from visionnet.workers.models.info import RANDOM_WEIGHTS_NOTICE
from visionnet.workers.models.loading import ModelUnavailableError


@shared_task(name=job_type("classify").task, base=ModelTask, bind=True, acks_late=True)
def classify(
    self: ModelTask, *, job_id: str, sources: list[Source], params: dict[str, Any]
) -> None:
    # Uploads go after the last attempt (success, verdict, cancel), never before a retry.
    with released_after_last_attempt(self, self.ctx.blobs, upload_keys(sources)):
        _classify(self, job_id, sources, params)


def _classify(self: ModelTask, job_id: str, sources: list[Source], params: dict[str, Any]) -> None:
    ctx = self.ctx
    top_k = ClassifyParams.model_validate(params).top_k or ctx.settings.jobs.default_top_k
    if not ctx.jobs.start(job_id):
        return  # cancelled or expired before it ran
    try:
        model = ctx.classifier()
    except ModelUnavailableError as exc:
        ctx.jobs.transition(job_id, JobState.FAILED, error=str(exc))
        return

    batcher = ctx.classify_batcher()
    passes: list[str] = []

    def run(batch: list[Decoded]) -> list[dict[str, Any]]:
        served = batcher.submit([(d.image, top_k) for d in batch])
        passes.append(served.pass_id)
        return [{"predictions": [p.__dict__ for p in preds]} for preds in served.rows]

    images = process_images(ctx, job_id, sources, run, model.input_size)
    if images is None:
        return
    # The forward passes that served this job, shared with other jobs when
    # requests arrived together (dynamic batching).
    result: dict[str, Any] = {"model": model.info, "images": images, "forward_passes": passes}
    if model.info["random_weights"]:
        result["notice"] = RANDOM_WEIGHTS_NOTICE
    succeed(ctx, job_id, images, result)
