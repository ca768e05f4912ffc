"""`bench/quality.py` end to end on tiny data: it runs, and the API agrees with the model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.helpers import write_images
from tests.tiny_model import build_tiny_model


def test_quality_bench_runs_and_api_agrees_with_direct_model(tmp_path: Path) -> None:
    labeled = tmp_path / "labeled"
    for i, name in enumerate(("cats", "dogs", "ships")):
        write_images(labeled / name, range(i * 10, i * 10 + 6), fmt="JPEG")
    originals = tmp_path / "originals"
    write_images(originals, range(100, 104), fmt="JPEG")
    model = build_tiny_model(tmp_path / "model")
    out = tmp_path / "quality.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.quality", "--cifar-dir", str(labeled),
         "--neardup-dir", str(originals), "--model", str(model), "--knn-queries", "5",
         "--neardup-labeled", "3", "--per-job", "4", "--out", str(out)],
        capture_output=True, text=True, timeout=240, cwd=Path(__file__).parents[1],
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "kNN precision@10" in done.stdout

    (run,) = json.loads(out.read_text())["runs"]
    c = run["classification"]
    assert c["images"] == 18 and c["top1_disagreements"] == 0
    assert c["accuracy_api"] == c["accuracy_direct"]
    assert run["index_labeled"]["indexed"] == 18 and run["index_neardup"]["indexed"] == 4
    assert run["knn"]["queries"] == 5 and 0.0 <= run["knn"]["precision_at_10"] <= 1.0
    recall = run["neardup"]["recall_at_1"]
    assert set(recall) == {"resized_50pct", "recompressed_q30", "cropped_90pct", "flipped", "all"}
    assert all(0.0 <= v <= 1.0 for v in recall.values())
    assert run["neardup_labeled"]["originals"] == 3
