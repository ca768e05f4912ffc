"""A kill -9 of the whole embedded stack, then `up`: the tasks in flight come back at once.

The stack's redelivery timeout is an hour here, so a chunk held by a killed
worker could only come back through ``up`` handing it back (visionnet.unacked);
the job must end exact well within that hour (the wait below is a bound on
getting the right answer, not a speed threshold).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers import wait_job
from tests.test_faults import FaultStack, assert_exact, index_folder, wait_until_done_at_least
from visionnet.core.redis_conn import connect

pytestmark = pytest.mark.timeout(900)

REDELIVERY_TIMEOUT_S = 3600


@pytest.fixture(scope="module")
def slow_redelivery_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    stack = FaultStack(tmp_path_factory.mktemp("restart"))
    stack.env["VISIONNET_JOBS__REDELIVERY_TIMEOUT_S"] = str(REDELIVERY_TIMEOUT_S)
    stack.env["VISIONNET_JOBS__STALL_TIMEOUT_S"] = str(2 * REDELIVERY_TIMEOUT_S)
    stack.up()
    yield stack
    stack.down_later()


def test_up_hands_back_the_tasks_a_killed_stack_held(slow_redelivery_stack: FaultStack) -> None:
    stack = slow_redelivery_stack
    job_id, collection = index_folder(stack, "whole_stack_kill")
    assert wait_until_done_at_least(stack, job_id, 16)["state"] == "running"
    broker = connect(stack.redis_url)
    assert broker.zcard("unacked_index") >= 1  # a chunk is in a worker's hands
    stack.kill_everything()
    stack.up()
    job = wait_job(stack.base, job_id, timeout=REDELIVERY_TIMEOUT_S / 12, through_outages=True)
    assert_exact(stack, job, collection)
    check_log = (stack.tmp / f"up-{stack.starts}.log").read_text()
    assert "held are queued again" in check_log, check_log[-3000:]
