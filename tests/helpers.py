"""Test helpers: images made on the fly, free ports, polling jobs over HTTP."""

from __future__ import annotations

import hashlib
import io
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import requests
from PIL import Image, ImageDraw

from bench.stack import free_port as free_port  # the stack's ports, shared with the benches

if TYPE_CHECKING:
    from visionnet.workers.base import WorkerContext

FINAL = {"succeeded", "failed", "cancelled"}


def make_image(seed: int, size: tuple[int, int] = (48, 40)) -> Image.Image:
    """A distinct picture per seed: noise, a colour field and shapes."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8)
    img = Image.fromarray(base)
    draw = ImageDraw.Draw(img)
    for _ in range(4):
        x0, y0 = int(rng.integers(0, size[0] - 8)), int(rng.integers(0, size[1] - 8))
        x1, y1 = x0 + int(rng.integers(4, 30)), y0 + int(rng.integers(4, 30))
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        draw.rectangle((x0, y0, x1, y1), fill=colour)
    return img


def image_bytes(seed: int, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    make_image(seed).save(buf, format=fmt)
    return buf.getvalue()


def write_images(folder: Path, seeds: range, fmt: str = "PNG") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    ext = {"PNG": "png", "JPEG": "jpg"}[fmt]
    paths = []
    for seed in seeds:
        path = folder / f"img_{seed:04d}.{ext}"
        path.write_bytes(image_bytes(seed, fmt))
        paths.append(path)
    return paths


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def wait_job(
    base: str, job_id: str, timeout: float = 120.0, *, through_outages: bool = False, **kw: Any
) -> dict[str, Any]:
    """Poll until the job is final. ``through_outages``: the web or Redis may be restarting."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            r = requests.get(f"{base}/api/v1/jobs/{job_id}", timeout=10, **kw)
        except requests.ConnectionError:
            if not through_outages:
                raise
            time.sleep(0.5)
            continue
        if through_outages and r.status_code == 503:
            time.sleep(0.5)
            continue
        assert r.status_code == 200, r.text
        job: dict[str, Any] = r.json()
        if job["state"] in FINAL:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} not finished after {timeout}s")


def submit(base: str, endpoint: str, **kw: Any) -> str:
    r = requests.post(f"{base}/api/v1/{endpoint}", timeout=30, **kw)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status_url"] == f"/api/v1/jobs/{body['job_id']}"
    return str(body["job_id"])


def wait_healthy(base: str, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            r = requests.get(f"{base}/api/v1/health", timeout=5)
            last = r.json()
            if r.status_code == 200:
                return dict(last)
        except requests.ConnectionError as exc:
            last = exc
        time.sleep(0.3)
    raise AssertionError(f"not healthy after {timeout}s: {last}")


def float_dtypes(safetensors_file: Path) -> set[str]:
    """The dtypes of a weights file's floating tensors (BatchNorm counters are I64)."""
    from safetensors import safe_open

    with safe_open(str(safetensors_file), framework="pt") as f:
        keys = f.keys()  # the handle is not iterable
        return {str(f.get_slice(k).get_dtype()) for k in keys} - {"I64"}


def with_milvus(uri: str, call: Any, attempts: int = 5) -> Any:
    """Run ``call(client)`` on a fresh client to the stack's Milvus.

    gRPC in the test process sometimes gets a GOAWAY ("too many pings") from the
    server and fails the call: retry that on a new client.
    """
    from pymilvus import MilvusClient, MilvusException

    for attempt in range(attempts):
        client = None
        try:
            client = MilvusClient(uri=uri)
            return call(client)
        except MilvusException:
            if attempt == attempts - 1:
                raise
            time.sleep(2)
        finally:
            if client is not None:
                client.close()
    raise AssertionError("unreachable")


def counts(job: dict[str, Any]) -> dict[str, int]:
    """A job's total, done and failed (its progress has rate, ETA and more besides)."""
    return {k: job["progress"][k] for k in ("total", "done", "failed")}


def lite_worker_context(redis_url: str, tmp: Path) -> WorkerContext:
    """The store writer's context, in this process, on ``redis_url`` and a Milvus
    Lite database file under ``tmp``: for tests of what the writer does, without
    starting a worker."""
    from visionnet.config.settings import Settings
    from visionnet.workers.base import WorkerContext

    settings = Settings(
        redis_url=redis_url,
        data_dir=tmp / "data",
        milvus={"uri": str(tmp / "milvus.db")},  # type: ignore[arg-type]
    )
    return WorkerContext(settings)
