"""A task that could not be sent leaves no half-done state behind.

The app runs alone on a private Redis (tests/webapp.py); its Celery client
publishes to a broker port where nothing listens, so every publish fails for
real (connection refused) while the job records and the registry still answer.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
import redis
from flask.testing import FlaskClient

from tests.helpers import free_port, image_bytes
from tests.webapp import WebApp
from visionnet.core.blobs import PREFIX as BLOB_PREFIX
from visionnet.core.collections import CollectionRegistry
from visionnet.core.redis_conn import connect
from visionnet.web import create_app
from visionnet.web.services import EXTENSION_KEY, Services

UNAVAILABLE = {"error": "unavailable", "message": "Broker or result backend unavailable."}


@pytest.fixture
def unsent(web: WebApp) -> Iterator[FlaskClient]:
    """The app with its broker unreachable: records and registry on the private Redis."""
    app = create_app({"SETTINGS": web.settings(), "TESTING": True})
    svc: Services = app.extensions[EXTENSION_KEY]
    svc.celery.conf.broker_url = f"redis://127.0.0.1:{free_port()}/0"
    yield app.test_client()


def _blob_keys(web: WebApp) -> list[bytes]:
    raw = redis.Redis(unix_socket_path=web.redis_url.removeprefix("redis+socket://"))
    return list(raw.scan_iter(match=BLOB_PREFIX + "*"))


def test_a_job_whose_task_was_not_sent_is_failed(web: WebApp, unsent: FlaskClient) -> None:
    folder = web.root / "unsent"
    folder.mkdir(exist_ok=True)
    r = unsent.post("/api/v1/index", json={"source": {"path": str(folder)}})
    assert r.status_code == 503 and r.json == UNAVAILABLE
    upload = {"files": (io.BytesIO(image_bytes(1)), "one.png")}
    r = unsent.post("/api/v1/classify", data=upload, content_type="multipart/form-data")
    assert r.status_code == 503 and r.json == UNAVAILABLE

    listed = web.client.get("/api/v1/jobs?limit=2").json
    assert listed is not None
    newest = listed["jobs"]
    assert [j["type"] for j in newest] == ["classify", "index"]
    for job in newest:
        assert job["state"] == "failed", job
        assert web.client.get(f"/api/v1/jobs/{job['id']}").json["state"] == "failed"  # type: ignore[index]
        assert job["error"].startswith("could not be queued (broker unavailable)"), job
    # Only failed ones are in the list of queued jobs: none of these.
    queued = web.client.get("/api/v1/jobs?state=queued").json
    assert queued is not None
    assert {j["id"] for j in newest}.isdisjoint(j["id"] for j in queued["jobs"])
    assert _blob_keys(web) == []  # the upload went with its record


def test_a_collection_whose_drop_was_not_sent_stays_listed(
    web: WebApp, unsent: FlaskClient
) -> None:
    registry = CollectionRegistry(connect(web.redis_url))
    registry.created("undropped", "m", 8)
    r = unsent.delete("/api/v1/collections/undropped")
    assert r.status_code == 503 and r.json == UNAVAILABLE
    listed = web.client.get("/api/v1/collections").json
    assert listed is not None
    assert [c["state"] for c in listed["collections"] if c["name"] == "undropped"] == ["ready"]
    assert web.client.get("/api/v1/collections/undropped").status_code == 200
    # A drop delivered after all forgets the entry; the undo must not bring a bare one back.
    registry.forget("undropped")
    registry.unmark_deleting("undropped")
    assert registry.get("undropped") is None
    assert registry.mark_deleting("undropped") is None
    assert registry.get("undropped") is None
