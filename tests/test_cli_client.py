"""The CLI against the live stack, as a user runs it: exit codes, tables and --json."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import requests

from tests.conftest import VISIONNET, Stack
from tests.helpers import free_port, write_images


def cli(stack: Stack, *args: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VISIONNET_")}
    env["VISIONNET_URL"] = url or stack.base
    return subprocess.run(
        [VISIONNET, *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_index_wait_prints_the_final_counts_and_exits_0(stack: Stack) -> None:
    folder = stack.root / "cli"
    write_images(folder, range(9500, 9540), fmt="JPEG")
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    out = cli(stack, "index", str(folder), "-c", "cli")
    assert out.returncode == 0, out.stderr
    assert "40 new, 0 already there" in out.stdout
    assert "broken.jpg" in out.stdout  # the failed file, with its reason
    again = cli(stack, "index", str(folder), "-c", "cli", "--json")
    assert again.returncode == 0, again.stderr
    job: dict[str, Any] = json.loads(again.stdout)
    assert (job["result"]["indexed"], job["result"]["skipped"]) == (0, 40)

    listed = json.loads(cli(stack, "jobs", "--type", "index", "--json").stdout)
    assert listed["jobs"][0]["id"] == job["id"]
    shown = cli(stack, "job", job["id"], "--json")
    assert shown.returncode == 0 and json.loads(shown.stdout)["id"] == job["id"]
    collections = json.loads(cli(stack, "collections", "--json").stdout)
    assert {"name": "cli", "count": 40}.items() <= next(
        c for c in collections if c["name"] == "cli"
    ).items()


def test_search_and_classify_print_results(stack: Stack) -> None:
    folder = stack.root / "cli_q"
    (query,) = write_images(folder, range(9600, 9601))
    assert cli(stack, "index", str(folder), "-c", "cli_q", "--json").returncode == 0
    found = cli(stack, "search", str(query), "-c", "cli_q", "-k", "1", "--json")
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["result"]["hits"][0]["path"] == str(query)
    labels = cli(stack, "classify", str(query), "-k", "2")
    assert labels.returncode == 0 and query.name in labels.stdout


def test_filtered_search_and_export(stack: Stack, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    folder = stack.root / "cli_f"
    (query,) = write_images(folder / "a", range(9650, 9651))
    write_images(folder / "b", range(9651, 9655))
    assert cli(stack, "index", str(folder), "-c", "cli_f", "--json").returncode == 0
    only_b = f"path_prefix={folder / 'b'}/"
    found = cli(stack, "search", str(query), "-c", "cli_f", "--filter", only_b, "--json")
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)["result"]["hits"]
    assert len(hits) == 4 and all(h["path"].startswith(str(folder / "b")) for h in hits)
    table = cli(stack, "search", str(query), "-c", "cli_f", "--filter", "min_width=1")
    assert table.returncode == 0 and "48x40" in table.stdout  # the sizes are shown
    bad = cli(stack, "search", str(query), "-c", "cli_f", "--filter", "colour=red")
    assert bad.returncode == 2 and "colour=red" in bad.stderr  # a usage error

    out = tmp_path / "cli_f.parquet"
    exported = cli(stack, "export", "cli_f", str(out))
    assert exported.returncode == 0, exported.stderr
    assert pq.read_table(out).num_rows == 5


def test_exit_codes_tell_failure_from_success(stack: Stack) -> None:
    folder = stack.root / "cli_x"
    (query,) = write_images(folder, range(9700, 9701))
    missing = cli(stack, "search", str(query), "-c", "no_such_collection")
    assert missing.returncode == 1  # the job ran and failed
    assert "does not exist" in missing.stdout
    refused = cli(stack, "index", str(stack.outside), "-c", "x")
    assert refused.returncode == 3, refused.stderr  # the API refused: outside the roots
    assert "allowed roots" in refused.stderr or "outside" in refused.stderr
    nobody = cli(stack, "jobs", url=f"http://127.0.0.1:{free_port()}")
    assert nobody.returncode == 4 and "cannot reach" in nobody.stderr


def test_index_uploads_an_archive(stack: Stack, tmp_path: Path) -> None:
    import zipfile

    from tests.helpers import image_bytes

    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(6):
            zf.writestr(f"photos/{i}.png", image_bytes(9800 + i))
    out = cli(stack, "index", str(archive), "-c", "cli_zip", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)["result"]
    assert (result["indexed"], result["failed"]) == (6, 0)


def test_index_classify_stores_top_labels_for_the_label_filter(stack: Stack) -> None:
    folder = stack.root / "cli_labels"
    paths = write_images(folder, range(9700, 9706), fmt="JPEG")
    assert cli(stack, "index", str(folder), "-c", "cli_labels", "--classify").returncode == 0
    image_id = hashlib.sha256(paths[0].read_bytes()).hexdigest()
    stored = requests.get(f"{stack.base}/api/v1/images/{image_id}", timeout=10).json()
    assert stored["label"], stored  # classified in the same pass
    found = cli(
        stack, "search", str(paths[0]), "-c", "cli_labels", "--filter", f"label={stored['label']}",
        "--json",
    )  # fmt: skip
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)["result"]["hits"]
    assert hits and all(h["label"] == stored["label"] for h in hits)
