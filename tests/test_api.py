"""API surface: health and Flower on the live stack; unknown jobs, errors, OpenAPI, docs
and the page from the app alone (Flask's test client, a private Redis, no worker)."""

from __future__ import annotations

import io

import requests

from tests.conftest import Stack
from tests.helpers import image_bytes
from tests.webapp import WebApp


def test_health_reports_workers_on_each_queue(stack: Stack) -> None:
    r = requests.get(f"{stack.base}/api/v1/health", timeout=10)
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["redis"] is True
    queues = {q["queue"]: q["workers"] for q in body["queues"]}
    assert queues["models"] and queues["bulk"] and queues["store"]
    assert any(w.startswith("interactive@") for w in queues["models"])
    assert any(w.startswith("models@") for w in queues["bulk"])
    assert any(w.startswith("store@") for w in queues["store"])


def test_unknown_job_is_404(web: WebApp) -> None:
    # Lookalikes of a job's side keys must not reach Redis as job ids (was a 500).
    for job_id in ("0" * 32, "no-such-job", "0" * 32 + ":chunks", "0" * 32 + ":errors"):
        r = web.client.get(f"/api/v1/jobs/{job_id}")
        assert r.status_code == 404
        assert r.json["error"] == "not_found"  # type: ignore[index]
        assert web.client.delete(f"/api/v1/jobs/{job_id}").status_code == 404
        assert web.client.post(f"/api/v1/jobs/{job_id}/cancel").status_code == 404


def test_unknown_route_and_method_are_json(web: WebApp) -> None:
    r = web.client.get("/api/v1/nothing-here")
    assert r.status_code == 404 and r.json["error"] == "not_found"  # type: ignore[index]
    r = web.client.get("/api/v1/classify")
    assert r.status_code == 405 and "message" in r.json  # type: ignore[operator]


def test_wrong_content_type_is_415(web: WebApp) -> None:
    r = web.client.post(
        "/api/v1/classify", data=b"raw", headers={"Content-Type": "application/octet-stream"}
    )
    assert r.status_code == 415
    assert r.json["error"] == "unsupported_media_type"  # type: ignore[index]


def test_malformed_json_is_400(web: WebApp) -> None:
    r = web.client.post(
        "/api/v1/search", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400
    r = web.client.post("/api/v1/search", json={"image_id": "xyz"})
    assert r.status_code == 400 and "image_id" in r.json["message"]  # type: ignore[index]


def test_openapi_document_and_offline_docs(web: WebApp) -> None:
    spec = web.client.get("/docs/openapi.json").json
    assert spec is not None and spec["openapi"].startswith("3.")
    # No token configured (loopback): the document declares no auth and no 401s.
    assert "securitySchemes" not in spec.get("components", {})
    operations = [op for item in spec["paths"].values() for op in item.values()]
    assert operations and not [op for op in operations if "security" in op]
    assert not [op for op in operations if "401" in op.get("responses", {})]
    assert {
        "/api/v1/classify",
        "/api/v1/embed",
        "/api/v1/index",
        "/api/v1/search",
        "/api/v1/jobs/{job_id}",
        "/api/v1/health",
    } <= set(spec["paths"])
    for dual in ("classify", "embed", "search", "index"):
        body = spec["paths"][f"/api/v1/{dual}"]["post"]["requestBody"]["content"]
        assert {"multipart/form-data", "application/json"} <= set(body)
    index_body = spec["paths"]["/api/v1/index"]["post"]["requestBody"]["content"]
    form = index_body["multipart/form-data"]["schema"]
    if "$ref" in form:
        form = spec["components"]["schemas"][form["$ref"].rsplit("/", 1)[-1]]
    for upload in ("archive", "url_list"):  # one or the other (issue 27): the web checks
        assert form["properties"][upload]["format"] == "binary"
        assert upload not in form.get("required", [])
    assert "202" in spec["paths"]["/api/v1/index"]["post"]["responses"]
    page = web.client.get("/docs/swagger")
    assert page.status_code == 200
    assert "https://" not in page.text  # served from bundled files: works offline
    asset = web.client.get("/docs/swagger/js/swagger-ui-bundle.js")
    assert asset.status_code == 200 and len(asset.data) > 10_000


def test_web_page(web: WebApp) -> None:
    r = web.client.get("/")
    assert r.status_code == 200
    assert "/static/app.js" in r.text and "/static/app.css" in r.text
    script = web.client.get("/static/app.js")
    assert script.status_code == 200 and 'const API = "/api/v1"' in script.text
    assert "https://" not in r.text + script.text  # no CDN: works offline


def test_flower_serves_on_loopback(stack: Stack) -> None:
    port = stack.env["VISIONNET_FLOWER__PORT"]
    r = requests.get(f"http://127.0.0.1:{port}/healthcheck", timeout=10)
    assert r.status_code == 200 and r.text == "OK"


def test_form_fields_keep_their_types(web: WebApp) -> None:
    def image() -> tuple[io.BytesIO, str, str]:
        return io.BytesIO(image_bytes(1)), "q.png", "image/png"

    r = web.client.post("/api/v1/search", data={"image": image(), "k": "true"})
    assert r.status_code == 400 and "k" in r.json["message"]  # type: ignore[index]
    r = web.client.post("/api/v1/search", data={"image": image(), "collection": "123"})
    assert r.status_code == 400
    assert "collection" in r.json["message"]  # type: ignore[index]  # pattern, not type
