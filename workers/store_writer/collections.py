"""Dropping a collection: a write, so it runs where writes run (the single store writer
with Milvus Lite; any model worker when they write to a real server directly)."""

from __future__ import annotations

import logging

from celery import shared_task

from visionnet.core.queues import DROP_COLLECTION
from visionnet.workers.store_writer.context import StoreTask
from visionnet.workers.store_writer.flush_due import UNFLUSHED

log = logging.getLogger(__name__)


@shared_task(name=DROP_COLLECTION, base=StoreTask, bind=True, acks_late=True)
def drop_collection(self: StoreTask, *, collection: str) -> None:
    """Idempotent: dropping a collection that is gone already is done."""
    self.ctx.store.drop_collection(collection)
    self.ctx.catalog.drop(collection)
    self.ctx.collections.forget(collection)
    UNFLUSHED.forget(collection)
    log.info("dropped collection %s", collection)
