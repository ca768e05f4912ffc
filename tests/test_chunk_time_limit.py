"""An index chunk that runs past ``jobs.chunk_time_limit_s`` fails its files, not its job.

Real slowness, not a hook: the fault tests' slow model (wide, at 512 px) takes
seconds over a chunk of 64 pictures, far past the 1 s limit set here. Celery's
soft time limit stops the chunk in the model worker's pool process; every file
of the chunk fails with "timed out after 1 s" (all of them: the chunk's
finished files are not kept), the job ends ``succeeded``, and the worker, not
killed, takes the next job's chunks.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers import counts, submit, wait_job, write_images
from tests.test_faults import FaultStack

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def limited_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    stack = FaultStack(
        tmp_path_factory.mktemp("time-limit"),
        VISIONNET_JOBS__CHUNK_TIME_LIMIT_S="1",
        VISIONNET_JOBS__CHUNK_SIZE="64",
    )
    stack.up()
    yield stack
    stack.down_later()


def test_a_chunk_past_its_time_limit_fails_its_files_and_the_job_goes_on(
    limited_stack: FaultStack,
) -> None:
    folder = limited_stack.root / "slow"
    write_images(folder, range(64), fmt="JPEG")
    pool = limited_stack.pool_child("models").pid
    jobs = [
        submit(
            limited_stack.base,
            "index",
            json={"source": {"path": str(folder)}, "collection": f"slow{n}"},
        )
        for n in range(2)
    ]
    for job_id in jobs:  # the second job runs after the first's chunk timed out
        job = wait_job(limited_stack.base, job_id, timeout=300)
        assert job["state"] == "succeeded", job
        assert counts(job) == {"total": 64, "done": 64, "failed": 64}
        errors = job["result"]["errors"]
        assert len(errors) == 64 and {e["error"] for e in errors} == {"timed out after 1 s"}
    assert limited_stack.pool_child("models").pid == pool  # stopped, not killed
