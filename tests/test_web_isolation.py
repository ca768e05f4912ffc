"""The web process never imports torch, transformers or pymilvus, even after serving jobs."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tests.conftest import Stack
from tests.helpers import free_port, write_images

SCRIPT = textwrap.dedent(
    """
    import json, sys, threading, time
    import requests
    from werkzeug.serving import make_server
    from visionnet.web import create_app
    from tests.helpers import image_bytes, submit, wait_job

    server = make_server("127.0.0.1", int(sys.argv[1]), create_app(), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{sys.argv[1]}"
    folder = sys.argv[2]
    states = []
    files = [("files", ("a.png", image_bytes(5), "image/png"))]
    states.append(wait_job(base, submit(base, "classify", files=files))["state"])
    idx = submit(base, "index", json={"source": {"path": folder}, "collection": "iso"})
    states.append(wait_job(base, idx)["state"])
    files = {"image": ("q.png", image_bytes(5), "image/png")}
    sid = submit(base, "search", files=files, data={"collection": "iso"})
    states.append(wait_job(base, sid)["state"])
    states.append(requests.get(base + "/api/v1/health", timeout=10).status_code)
    server.shutdown()
    heavy = sorted(m for m in sys.modules
                   if m.split(".")[0] in {"torch", "transformers", "pymilvus", "milvus_lite"})
    print(json.dumps({"states": states, "heavy": heavy}))
    """
)


def test_web_process_stays_light(stack: Stack) -> None:
    folder = stack.root / "isolation"
    write_images(folder, range(500, 504))
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(free_port()), str(folder)],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["states"] == ["succeeded", "succeeded", "succeeded", 200]
    assert report["heavy"] == []
