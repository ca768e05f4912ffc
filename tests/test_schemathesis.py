"""schemathesis against the live stack: every check, every phase, a fixed seed and budget.

Configuration and the one per-operation exception are in
``tests/schemathesis/schemathesis.toml``; the hooks there make the image
uploads the schema declares. Seed 1 and 20 examples per operation: about 430
requests, a few seconds.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import requests

from tests.conftest import Stack

HERE = Path(__file__).parent
SCHEMATHESIS = str(Path(sys.executable).with_name("schemathesis"))


def test_the_api_meets_its_openapi_document(stack: Stack, tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(HERE.parent))
    env["SCHEMATHESIS_HOOKS"] = "tests.schemathesis.hooks"
    config = HERE / "schemathesis" / "schemathesis.toml"
    out = subprocess.run(
        [SCHEMATHESIS, "--no-color", "--config-file", str(config),
         "run", f"{stack.base}/docs/openapi.json", "--phases", "examples,coverage,fuzzing,stateful",
         "--max-examples", "20", "--seed", "1", "--workers", "1", "--request-timeout", "30"],
        capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path,
    )  # fmt: skip
    report = out.stdout + out.stderr
    assert out.returncode == 0, report[-8000:]
    spec = requests.get(f"{stack.base}/docs/openapi.json", timeout=10).json()
    operations = sum(len(methods) for methods in spec["paths"].values())
    assert f"Tested: {operations}" in report and " passed" in report  # every operation ran
    for phase in ("Coverage", "Fuzzing", "Stateful"):
        assert f"✅ {phase}" in report, report[-3000:]
