"""Upload blobs of classify, embed and search jobs live until the task's last attempt.

On a private Redis with the real task objects (their retry policy), no worker:
the rule is the same for every task that reads uploads.
"""

from __future__ import annotations

import pytest
import redis

from visionnet.core.blobs import BlobStore
from visionnet.core.redis_conn import connect
from visionnet.workers.model_worker.classify import classify
from visionnet.workers.model_worker.embed import embed
from visionnet.workers.model_worker.search import search as search_task
from visionnet.workers.model_worker.upload_blobs import released_after_last_attempt, upload_keys


@pytest.fixture()
def blobs(private_redis: str) -> BlobStore:
    return BlobStore(connect(private_redis, decode=False), 600)


def _left(store: BlobStore, keys: list[str]) -> list[str]:
    return [k for k in keys if store.get(k) is not None]


@pytest.mark.parametrize("task", [classify, embed, search_task], ids=lambda t: t.name)
def test_blobs_stay_for_a_retry_and_go_after_the_last_attempt(
    task: object, blobs: BlobStore
) -> None:
    keys = [blobs.put("job-b", i, b"bytes") for i in range(2)]

    # Redis or Milvus restarting: Celery retries, so the uploads must still be there.
    retried = pytest.raises(redis.exceptions.ConnectionError)
    with retried, released_after_last_attempt(task, blobs, keys):  # type: ignore[arg-type]
        raise redis.exceptions.ConnectionError("restarting")
    assert _left(blobs, keys) == keys

    # A verdict (no retry follows): gone.
    with pytest.raises(ValueError), released_after_last_attempt(task, blobs, keys):  # type: ignore[arg-type]
        raise ValueError("bad")
    assert _left(blobs, keys) == []

    # The body ends normally (success, or a cancelled job returning early): gone.
    keys = [blobs.put("job-c", 0, b"bytes")]
    with released_after_last_attempt(task, blobs, keys):  # type: ignore[arg-type]
        pass
    assert _left(blobs, keys) == []


def test_upload_keys_are_the_uploaded_sources_only() -> None:
    sources = [{"blob": "visionnet:blob:j:0", "name": "a.png"}, {"path": "/data/b.png"}]
    assert upload_keys(sources) == ["visionnet:blob:j:0"]
