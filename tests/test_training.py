"""``visionnet train-demo``: a labeled folder in, a model the service loads like any other out."""

from __future__ import annotations

import itertools
import json
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import VISIONNET
from tests.helpers import float_dtypes
from visionnet.workers.models.classifier import Classifier
from visionnet.workers.models.embedder import Embedder

COLOURS = {"blue": 2, "green": 1, "red": 0}  # class name -> dominant channel


def write_colour_folder(root: Path, per_class: int, seed: int) -> None:
    """Noisy pictures whose class is their dominant colour: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    for name, channel in COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 110, size=(24, 24, 3), dtype=np.uint8)
            pixels[..., channel] += 140
            Image.fromarray(pixels).save(root / name / f"{i:03d}.jpg", quality=90)


def train(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [VISIONNET, "train-demo", *args], capture_output=True, text=True, timeout=240
    )


TINY = ["--widths", "8,16,16", "--batch-size", "16", "--curve-images", "12"]


def test_train_demo_learns_and_saves_a_loadable_fp16_model(tmp_path: Path) -> None:
    write_colour_folder(tmp_path / "train", 32, seed=0)
    write_colour_folder(tmp_path / "eval", 10, seed=1)
    out = tmp_path / "model"
    args = [str(tmp_path / "train"), str(out), "--eval-dir", str(tmp_path / "eval")]
    done = train(*args, *TINY, "--epochs", "8")
    assert done.returncode == 0, done.stderr
    assert "epoch 8 (48/48 steps)" in done.stdout

    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "visionnet-cifarnet"
    assert config["visionnet_flip_invariant"] is True
    assert config["id2label"] == {"0": "blue", "1": "green", "2": "red"}
    assert "visionnet_random_weights" not in config
    processor = json.loads((out / "preprocessor_config.json").read_text())
    assert processor["size"] == {"height": 32, "width": 32}
    assert processor["image_mean"] != [0.485, 0.456, 0.406]  # measured on the training data
    assert float_dtypes(out / "model.safetensors") == {"F16"}

    report = json.loads((out / "training.json").read_text())
    assert report["recipe"]["optimizer"] == "muon"
    assert report["epochs_run"] == 8 and report["train_images"] == 96
    assert report["eval_accuracy"] >= 0.9
    # The time/accuracy curve: a point per epoch on the eval folder's images, time rising.
    curve = report["curve"]
    assert [point["epochs"] for point in curve] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert all(a["seconds"] <= b["seconds"] for a, b in itertools.pairwise(curve))
    assert curve[-1]["accuracy"] >= 0.9

    # The service's own loaders read it; accuracy recomputed here matches the report.
    clf = Classifier(str(out), "cpu")
    assert clf.info["random_weights"] is False
    eval_files = sorted((tmp_path / "eval").glob("*/*.jpg"))
    images = [Image.open(p).convert("RGB") for p in eval_files]
    predicted = [row[0].label for row in clf.predict(images, top_k=1)]
    correct = sum(label == p.parent.name for label, p in zip(predicted, eval_files, strict=True))
    assert correct / len(eval_files) == report["eval_accuracy"]
    vectors = Embedder(str(out), "cpu").embed(images[:2])
    assert vectors.shape == (2, 16)


def test_the_sgd_recipe_also_learns_with_micro_batches(tmp_path: Path) -> None:
    """airbench94's recipe (demo model v2's), a batch of 16 in passes of 8."""
    write_colour_folder(tmp_path / "train", 32, seed=0)
    write_colour_folder(tmp_path / "eval", 10, seed=1)
    out = tmp_path / "model"
    args = [str(tmp_path / "train"), str(out), "--eval-dir", str(tmp_path / "eval")]
    done = train(*args, *TINY, "--epochs", "12", "--optimizer", "sgd", "--micro-batch", "8")
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "training.json").read_text())
    assert report["recipe"]["optimizer"] == "sgd" and report["recipe"]["micro_batch"] == 8
    assert report["steps_run"] == 72  # 96 images, batch 16: passes of 8 do not add steps
    assert report["eval_accuracy"] >= 0.9
    assert json.loads((out / "config.json").read_text())["logit_scale"] == 1 / 9


def test_time_budget_fits_the_schedule_to_the_machine(tmp_path: Path) -> None:
    write_colour_folder(tmp_path / "train", 8, seed=2)
    done = train(
        str(tmp_path / "train"),
        str(tmp_path / "m"),
        *TINY,
        "--epochs",
        "50",
        "--time-budget-min",
        "0.001",
    )
    assert done.returncode == 0, done.stderr
    assert "1 steps (1.00 epochs) fit" in done.stdout  # 24 images, batch 16: one step
    report = json.loads((tmp_path / "m/training.json").read_text())
    assert report["steps_run"] == 1 and report["epochs_run"] == 1.0


def test_train_demo_needs_class_folders(tmp_path: Path) -> None:
    write_colour_folder(tmp_path / "train", 2, seed=3)
    for extra in ("green", "blue"):
        for f in (tmp_path / "train" / extra).iterdir():
            f.unlink()
        (tmp_path / "train" / extra).rmdir()
    done = train(str(tmp_path / "train"), str(tmp_path / "m"), *TINY)
    assert done.returncode != 0
    assert "at least two class folders" in done.stderr
    assert not (tmp_path / "m").exists()
    (tmp_path / "train" / "empty").mkdir()
    done = train(str(tmp_path / "train"), str(tmp_path / "m"), *TINY)
    assert done.returncode != 0 and "has no images" in done.stderr
