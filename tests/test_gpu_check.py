"""bench/gpu_check.py on the CPU: its dry run measures every part with a tiny model, so
the script that will run once on a GPU cannot rot before it gets there."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from bench import gpu_check, gpu_parts

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("model_alone", "pipeline", "decode", "train_demo")


def write_inputs(tmp: Path) -> list[str]:
    """Photos of a few sizes (one gray) and two labeled classes, as the dry run's data."""
    rng = np.random.default_rng(0)
    (tmp / "photos").mkdir()
    for n in range(5):
        pixels = rng.integers(0, 255, (40 + 9 * n, 56 + 5 * n, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp / "photos" / f"{n}.jpg", quality=85)
    Image.new("L", (50, 30), 90).save(tmp / "photos" / "gray.jpg")
    for split, count in (("train", 8), ("test", 4)):
        for label, colour in (("cat", (200, 60, 60)), ("dog", (60, 60, 200))):
            folder = tmp / split / label
            folder.mkdir(parents=True)
            for i in range(count):
                noise = rng.normal(0, 25, (32, 32, 3))
                pixels = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.jpg")
    return [
        f"--images={tmp / 'photos'}",
        f"--cifar-train={tmp / 'train'}",
        f"--cifar-test={tmp / 'test'}",
        f"--wheels={tmp / 'no-wheels'}",
    ]


@pytest.fixture
def in_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``gpu_check.main`` run in this process: the torch threads its dry run sets (one)
    and the environment it sets given back afterwards."""
    import torch

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def rate(entry: dict[str, Any]) -> float:
    assert entry["repeats"] == gpu_parts.REPEATS, entry
    assert 0 < entry["seconds_min"] <= entry["seconds_median"]
    assert entry["img_s_best"] >= entry["img_s_median"] > 0
    return float(entry["img_s_median"])


def test_dry_run_measures_every_part(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check.json"
    command = [sys.executable, "-m", "bench.gpu_check", "--dry-run", f"--out={out}"]
    done = subprocess.run(
        [*command, *write_inputs(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    parts = report["parts"]
    assert tuple(parts) == PARTS
    for name in PARTS:
        assert "error" not in parts[name] and "skipped" not in parts[name], parts[name]
    assert report["env"]["device"] == "cpu" and report["dry_run"] is True

    alone = parts["model_alone"]
    assert alone["attention"] == "sdpa"
    assert set(alone["batches"]) == {str(b) for b in gpu_parts.DRY.model_batches}
    for entry in alone["batches"].values():
        rate(entry)

    pipeline = parts["pipeline"]
    assert pipeline["images"] == gpu_parts.DRY.pipeline_images
    assert len(pipeline["variants"]) == len(gpu_parts.DRY.pipeline_variants)
    for variant in pipeline["variants"]:
        rate(variant)
        assert variant["last_run"]["errors"] == 0  # every copy read, decoded and embedded

    decode = parts["decode"]
    assert set(decode["cpu_threads"]) == {str(t) for t in gpu_parts.DRY.decode_threads}
    for entry in decode["cpu_threads"].values():
        rate(entry)
    gpu = decode["gpu"]  # torchvision is not in this venv; where it is, its CPU decode runs
    assert isinstance(gpu.get("skipped"), str) or all(
        rate(entry) for entry in gpu.values() if isinstance(entry, dict)
    )

    demo = parts["train_demo"]
    assert demo["eval_images"] == 8 and 0 <= demo["eval_accuracy"] <= 1
    assert demo["shipped_model"]["eval_images"] == 8
    assert "skipped" in demo["service_quality"]

    assert "| figure | measured (median of 3) | goal |" in done.stdout
    assert "index pipeline, real JPEGs" in done.stdout


@pytest.mark.usefixtures("in_process")
def test_parts_left_without_time_are_skipped_and_recorded(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check.json"
    args = ["--dry-run", "--deadline-s=0", f"--out={out}", *write_inputs(tmp_path)]
    assert gpu_check.main(args) == 0
    parts = json.loads(out.read_text())["parts"]
    assert tuple(parts) == PARTS
    for name in PARTS:
        assert parts[name]["skipped"].startswith("out of time"), parts[name]


@pytest.mark.usefixtures("in_process")
def test_missing_data_skips_its_parts_with_the_flag_to_pass(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check.json"
    nowhere = tmp_path / "nowhere"
    args = ["--dry-run", f"--out={out}", f"--wheels={tmp_path}", f"--images={nowhere}"]
    args += [f"--cifar-train={nowhere}", f"--cifar-test={nowhere}"]
    assert gpu_check.main(args) == 0
    parts = json.loads(out.read_text())["parts"]
    assert "batches" in parts["model_alone"]
    assert "--images" in parts["pipeline"]["skipped"]
    assert "--images" in parts["decode"]["skipped"]
    assert "--cifar-train" in parts["train_demo"]["skipped"]


def test_the_check_mirrors_the_worker_defaults() -> None:
    from visionnet.config.settings import JobSettings, ModelSettings

    settings = {
        "chunk_size": JobSettings.model_fields["chunk_size"].default,
        "batch_size": ModelSettings.model_fields["batch_size"].default,
        "reader_threads": ModelSettings.model_fields["reader_threads"].default,
        "max_file_bytes": JobSettings.model_fields["max_file_bytes"].default,
    }
    mirrored = {**gpu_parts.WORKER_DEFAULTS, "max_file_bytes": gpu_parts.MAX_FILE_BYTES}
    assert mirrored == settings
