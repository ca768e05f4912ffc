"""`bench/quality.py` end to end on tiny data: the API agrees with the model, training pays."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from PIL import ImageFilter

from tests.helpers import make_image
from tests.test_training import TINY, train, write_colour_folder

COPY_KINDS = {"resized_50pct", "recompressed_q30", "cropped_90pct", "flipped", "all"}


def test_quality_bench_shows_api_agreement_and_trained_beating_random(tmp_path: Path) -> None:
    """What the bench exists to show, on classes a tiny net learns in seconds (dominant colour)."""
    write_colour_folder(tmp_path / "train", per_class=32, seed=1)
    write_colour_folder(tmp_path / "labeled", per_class=8, seed=2)  # held out
    # Smooth originals: the bench's flipped copy is re-encoded (JPEG q95), and on
    # pixel noise that alone moves a tiny net's features as far as another image.
    originals = tmp_path / "originals"
    originals.mkdir()
    for seed in range(100, 104):
        blurred = make_image(seed).filter(ImageFilter.GaussianBlur(3))
        blurred.save(originals / f"img_{seed}.jpg", quality=95)
    model = tmp_path / "model"
    trained = train(str(tmp_path / "train"), str(model), *TINY, "--epochs", "8")
    assert trained.returncode == 0, trained.stderr[-3000:]
    out = tmp_path / "quality.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.quality", "--cifar-dir", str(tmp_path / "labeled"),
         "--neardup-dir", str(originals), "--model", str(model), "--with-random-baseline",
         "--knn-queries", "12", "--neardup-labeled", "3", "--per-job", "8", "--out", str(out),
         "--throughput-images", "16"],
        capture_output=True, text=True, timeout=400, cwd=Path(__file__).parents[1],
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "kNN precision@10" in done.stdout

    trained_run, random_run = json.loads(out.read_text())["runs"]
    assert random_run["name"] == "random weights"
    for run in (trained_run, random_run):
        c = run["classification"]
        assert c["images"] == 24 and c["top1_disagreements"] == 0  # API == direct call
        assert c["accuracy_api"] == c["accuracy_direct"]
        assert run["index_labeled"]["indexed"] == 24 and run["index_neardup"]["indexed"] == 4
        recall = run["neardup"]["recall_at_1"]
        assert set(recall) == COPY_KINDS
    # The demo architecture is flip-invariant in the service; the bench times the option.
    assert trained_run["flip_invariant"] is True
    for flip in ("flip_off", "flip_on"):
        rate = trained_run["embedder_throughput"][flip]
        assert rate["images"] == 16 and 0 < rate["img_per_s_min"] <= rate["img_per_s_median"]
    assert trained_run["neardup"]["recall_at_1"]["flipped"] == 1.0
    accuracy = trained_run["classification"]["accuracy_api"]
    assert accuracy >= 0.9, trained_run["classification"]
    assert accuracy > random_run["classification"]["accuracy_api"] + 0.3
    # (kNN precision is no test of training here: random features sort colours too.)
    assert 0.0 < trained_run["knn"]["precision_at_10"] <= 1.0
