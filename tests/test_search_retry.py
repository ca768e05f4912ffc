"""A search by upload that hits a Milvus outage is retried with its upload, and succeeds.

Its own stack: Milvus calls give up after 10 s here (``milvus.timeout_s``), so the
first attempt fails within the test instead of after the default 120 s.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.conftest import SUPERVISORCTL, Stack, run_stack
from tests.helpers import image_bytes, submit, wait_job, write_images
from visionnet.core.blobs import PREFIX as BLOB_PREFIX
from visionnet.core.jobs import DELIVERY_PREFIX
from visionnet.core.redis_conn import connect

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def short_milvus_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from run_stack(tmp_path_factory.mktemp("retry-stack"), VISIONNET_MILVUS__TIMEOUT_S="10")


def ctl(stack: Stack, *args: str) -> str:
    conf = stack.data / "run" / "supervisord.conf"
    out = subprocess.run(
        [SUPERVISORCTL, "-c", str(conf), *args], capture_output=True, text=True, timeout=60
    )
    return out.stdout.strip()


def test_a_search_by_upload_survives_a_milvus_outage(short_milvus_stack: Stack) -> None:
    stack = short_milvus_stack
    paths = write_images(stack.root / "retry", range(6))
    index = submit(stack.base, "index", json={"source": {"path": str(paths[0].parent)},
                                              "collection": "retry"})  # fmt: skip
    assert wait_job(stack.base, index)["state"] == "succeeded"

    redis = connect(stack.redis_url)
    assert "stopped" in ctl(stack, "stop", "milvus")
    try:
        job = submit(
            stack.base,
            "search",
            files={"image": ("query.png", image_bytes(3), "image/png")},
            data={"k": "3", "collection": "retry"},
        )
        # The first attempt fails on Milvus; wait until its retry has started.
        deadline = time.monotonic() + 120
        while not redis.exists(f"{DELIVERY_PREFIX}{job}:1"):
            assert time.monotonic() < deadline, "the search was never retried"
            time.sleep(0.2)
    finally:
        assert "started" in ctl(stack, "start", "milvus")
    done = wait_job(stack.base, job, timeout=300)
    assert done["state"] == "succeeded", done
    hits = done["result"]["hits"]
    assert hits and hits[0]["path"] == str(paths[3])
    assert not list(redis.scan_iter(match=f"{BLOB_PREFIX}{job}:*"))  # gone after the success
