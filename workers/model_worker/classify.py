"""Classify job: top-k labels per image, progress after every batch.

The labels are the classifier's, or words the caller gives (``labels``), scored
against each image through a CLIP embedder's text tower (``text_labels``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from celery import shared_task

from visionnet.core.jobs import JobState
from visionnet.core.jobtypes import ClassifyParams, job_type, label_texts
from visionnet.workers.model_worker.context import ModelTask
from visionnet.workers.model_worker.images import Decoded, process_images, succeed
from visionnet.workers.model_worker.sources import Source
from visionnet.workers.model_worker.upload_blobs import released_after_last_attempt, upload_keys
from visionnet.workers.models.embedder import TextSearchUnavailableError
from visionnet.workers.models.info import RANDOM_WEIGHTS_NOTICE
from visionnet.workers.models.loading import ModelUnavailableError
from visionnet.workers.models.text_labels import WordLabeller


@shared_task(name=job_type("classify").task, base=ModelTask, bind=True, acks_late=True)
def classify(
    self: ModelTask, *, job_id: str, sources: list[Source], params: dict[str, Any]
) -> None:
    # Uploads go after the last attempt (success, verdict, cancel), never before a retry.
    with released_after_last_attempt(self, self.ctx.blobs, upload_keys(sources)):
        _classify(self, job_id, sources, params)


def _classify(self: ModelTask, job_id: str, sources: list[Source], params: dict[str, Any]) -> None:
    ctx = self.ctx
    p = ClassifyParams.model_validate(params)
    top_k = p.top_k or ctx.settings.jobs.default_top_k
    if not ctx.jobs.start(job_id):
        return  # cancelled or expired before it ran
    if p.labels:
        _classify_by_words(self, job_id, sources, p.labels, label_texts(p.labels, p.prompt), top_k)
        return
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


def _classify_by_words(
    self: ModelTask,
    job_id: str,
    sources: list[Source],
    labels: list[str],
    texts: list[str],
    top_k: int,
) -> None:
    """The caller's labels against each image: the embedder's image vectors (passes
    shared like an embed job's) scored against the label texts' vectors, made once."""
    ctx = self.ctx
    try:
        model = ctx.embedder()
        labeller = WordLabeller.build(model, labels, texts)
    except (ModelUnavailableError, TextSearchUnavailableError) as exc:
        ctx.jobs.transition(job_id, JobState.FAILED, error=f"labels from words: {exc}")
        return
    batcher = ctx.embed_batcher()
    passes: list[str] = []

    def run(batch: list[Decoded]) -> list[dict[str, Any]]:
        served = batcher.submit([d.image for d in batch])
        passes.append(served.pass_id)
        rows = labeller.top_k(np.stack(served.rows), top_k)
        return [{"predictions": [p.__dict__ for p in preds]} for preds in rows]

    images = process_images(ctx, job_id, sources, run, model.input_size)
    if images is None:
        return
    result: dict[str, Any] = {
        "model": model.info,
        "images": images,
        "forward_passes": passes,
        "labels_from_words": labeller.describe(),
    }
    if model.info["random_weights"]:
        result["notice"] = RANDOM_WEIGHTS_NOTICE
    succeed(ctx, job_id, images, result)
