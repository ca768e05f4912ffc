"""Bearer auth on the API, and a broker outage answered with 503 JSON: the app alone."""

from __future__ import annotations

import io
import time
from pathlib import Path

from tests.webapp import WebApp
from visionnet.config.settings import Settings
from visionnet.web import create_app


def _settings(**overrides: object) -> Settings:
    return Settings(**overrides)  # type: ignore[arg-type]


def test_api_requires_the_token_when_set(web: WebApp) -> None:
    client = web.client_with(web={"api_token": "t0ken"})
    assert client.get("/api/v1/jobs/abc").status_code == 401
    r = client.get("/api/v1/jobs/abc", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and r.json["error"] == "unauthorized"  # type: ignore[index]
    r = client.get("/api/v1/jobs/abc", headers={"Authorization": "Bearer t0ken"})
    assert r.status_code == 404
    spec = client.get("/docs/openapi.json").json  # the spec stays readable
    assert spec is not None
    assert spec["components"]["securitySchemes"] == {
        "bearerAuth": {"type": "http", "scheme": "bearer"}
    }
    job = spec["paths"]["/api/v1/jobs/{job_id}"]["get"]
    assert job["security"] == [{"bearerAuth": []}] and "401" in job["responses"]


def test_broker_outage_is_503(tmp_path: Path) -> None:
    settings = _settings(
        redis_url=f"redis+socket://{tmp_path}/absent.sock", allowed_roots=[tmp_path]
    )
    client = create_app({"SETTINGS": settings, "TESTING": True}).test_client()
    r = client.post("/api/v1/index", json={"source": {"path": str(tmp_path)}})
    assert r.status_code == 503
    assert r.json == {"error": "unavailable", "message": "Broker or result backend unavailable."}
    r = client.get("/api/v1/health")
    assert r.status_code == 503 and r.json["redis"] is False  # type: ignore[index]


def test_oversized_upload_is_413(web: WebApp) -> None:
    size = 2048
    client = web.client_with(web={"max_upload_bytes": size})
    r = client.post(
        "/api/v1/classify",
        data={"files": (io.BytesIO(b"x" * (size * 2)), "big.png")},
        content_type="multipart/form-data",
    )
    assert r.status_code == 413 and "error" in r.json  # type: ignore[operator]


def test_a_stalled_running_job_is_failed_when_read(web: WebApp) -> None:
    from visionnet.core.jobs import JobStore
    from visionnet.core.redis_conn import connect

    client = web.client_with(jobs={"stall_timeout_s": 1})
    jobs = JobStore(connect(web.redis_url), ttl_s=60)
    job = jobs.create("classify", {}, total=3)
    assert jobs.start(job) and jobs.set_progress(job, 1)
    assert client.get(f"/api/v1/jobs/{job}").json["state"] == "running"  # type: ignore[index]
    time.sleep(1.5)  # no worker reports: the one that held it is gone
    body = client.get(f"/api/v1/jobs/{job}").json
    assert body["state"] == "failed"  # type: ignore[index]
    assert "no progress" in body["error"] and "stall_timeout_s" in body["error"]  # type: ignore[index]
    assert body["progress"]["done"] == 1  # type: ignore[index]
