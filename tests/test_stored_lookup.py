"""What an index chunk skips as stored (``model_worker/stored.py``): the catalog's
word first, confirmed in the store. On a private Redis and a real Milvus Lite in
this process, the rows written as the store writer writes them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers import lite_worker_context
from tests.test_chunk_failures import ids, new_job, staged
from visionnet.workers.base import WorkerContext
from visionnet.workers.commit import commit_chunks
from visionnet.workers.model_worker.stored import stored_contents


@pytest.fixture(scope="module")
def ctx(private_redis: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerContext]:
    tmp = tmp_path_factory.mktemp("stored-lookup")
    yield lite_worker_context(private_redis, tmp)


def test_stored_means_listed_in_the_catalog_and_held_by_the_store(ctx: WorkerContext) -> None:
    collection = "stored_lookup"
    written = ids("s", 6)
    job_id = new_job(ctx, {0: 6})
    commit_chunks(ctx, [staged(job_id, 0, written, collection)])
    unknown = ids("u", 2)
    assert stored_contents(ctx.catalog, ctx.store, collection, written + unknown) == set(written)

    # A Redis that lost an entry: the content is taken as not stored (embedded
    # again; the writer, which asks the store, counts it as skipped).
    ctx.catalog.remove(collection, written[:1])
    # A delete cut between the store and the catalog: the store's word wins.
    ctx.store.delete_ids(collection, written[1:2], flush=False)
    assert written[1] in ctx.catalog.listed(collection, written)

    assert stored_contents(ctx.catalog, ctx.store, collection, written + unknown) == set(
        written[2:]
    )


def test_a_collection_not_made_yet_holds_nothing(ctx: WorkerContext) -> None:
    assert stored_contents(ctx.catalog, ctx.store, "never_made", ids("n", 3)) == set()
