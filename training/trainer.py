"""Train the demo classifier on a labeled folder and save it as a transformers model.

The runner logs each stage (read, train, evaluate, save) with its time; the
saved directory holds fp16 safetensors, the image processor, ``id2label`` and
``training.json`` (recipe, data, timings, accuracy) so the shipped weights say
how they were made.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from visionnet.training.architecture import demo_config, demo_processor
from visionnet.training.augment import crop_and_flip
from visionnet.training.folder import (
    LabeledFiles,
    channel_stats,
    decode_rgb,
    scan_labeled_folder,
    to_tensor,
)
from visionnet.training.recipe import Recipe

CALIBRATION_STEPS = 10


@dataclass
class TrainingData:
    labels: tuple[str, ...]
    processor: Any
    pixels: Any  # float32 (N, 3, H, W), already through the processor
    targets: Any  # int64 (N,)


def read_training_data(data_dir: Path, image_size: int) -> TrainingData:
    """Reader stage: decode once, normalise with statistics measured on this data."""
    import torch

    files = scan_labeled_folder(data_dir)
    images = decode_rgb(files.paths)
    processor = demo_processor(image_size, *channel_stats(images))
    return TrainingData(
        files.labels, processor, to_tensor(images, processor), torch.tensor(files.targets)
    )


class Fitter:
    """Model, optimizer and one training step; the schedule is set once the epochs are known."""

    def __init__(self, data: TrainingData, recipe: Recipe, device: str) -> None:
        import torch
        from transformers import ResNetForImageClassification

        self.data, self.recipe, self.device = data, recipe, device
        torch.manual_seed(recipe.seed)
        self.gen = torch.Generator().manual_seed(recipe.seed)
        model: Any = ResNetForImageClassification(
            demo_config(data.labels, hidden_sizes=recipe.hidden_sizes, depths=recipe.depths)
        )
        self.model = model.to(device).to(memory_format=torch.channels_last).train()
        params = list(model.parameters())
        self.optimizer = torch.optim.SGD(
            [  # no weight decay on BatchNorm scales and biases
                {"params": [p for p in params if p.ndim > 1], "weight_decay": recipe.weight_decay},
                {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
            ],
            lr=recipe.max_lr / 25,
            momentum=recipe.momentum,
            nesterov=True,
        )
        self.images = len(data.targets)
        self.batch = min(recipe.batch_size, self.images)
        self.steps_per_epoch = self.images // self.batch
        self.pad = round(recipe.image_size * recipe.crop_pad_fraction)
        self.autocast = torch.autocast(
            "cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda")
        )

    def step(self, indices: Any) -> float:
        import torch
        import torch.nn.functional as F

        xb = crop_and_flip(self.data.pixels[indices], self.pad, self.gen).to(self.device)
        xb = xb.contiguous(memory_format=torch.channels_last)
        yb = self.data.targets[indices].to(self.device)
        with self.autocast:
            logits = self.model(pixel_values=xb).logits
        loss = F.cross_entropy(logits.float(), yb, label_smoothing=self.recipe.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        self.optimizer.step()
        return float(loss.detach())

    def seconds_per_step(self) -> float:
        """Time a few steps at the schedule's starting rate (they count as training)."""
        import torch

        order = torch.randperm(self.images, generator=self.gen)
        started = time.perf_counter()
        for i in range(CALIBRATION_STEPS):
            first = (i % self.steps_per_epoch) * self.batch
            self.step(order[first : first + self.batch])
        return (time.perf_counter() - started) / CALIBRATION_STEPS

    def fit(self, epochs: int, echo: Callable[[str], None]) -> None:
        import torch

        schedule = torch.optim.lr_scheduler.OneCycleLR(
            self.optimizer,
            max_lr=self.recipe.max_lr,
            total_steps=epochs * self.steps_per_epoch,
            pct_start=self.recipe.warmup_fraction,
            anneal_strategy="linear",
            div_factor=25.0,
            final_div_factor=1e3,
        )
        for epoch in range(epochs):
            started = time.perf_counter()
            order = torch.randperm(self.images, generator=self.gen)
            losses = []
            lr = schedule.get_last_lr()[0]
            for i in range(self.steps_per_epoch):
                lr = schedule.get_last_lr()[0]
                losses.append(self.step(order[i * self.batch : (i + 1) * self.batch]))
                schedule.step()
            echo(
                f"epoch {epoch + 1}/{epochs}: loss {sum(losses) / len(losses):.4f} "
                f"lr {lr:.4f} ({time.perf_counter() - started:.1f} s)"
            )

    def save(self, out_dir: Path) -> None:
        """Writer stage: fp16 safetensors, id2label and the processor (save_pretrained layout)."""
        self.model.eval()
        self.model.config.id2label = dict(enumerate(self.data.labels))
        self.model.config.label2id = {label: i for i, label in enumerate(self.data.labels)}
        out_dir.mkdir(parents=True, exist_ok=True)
        self.model.to("cpu").half().save_pretrained(out_dir)
        self.data.processor.save_pretrained(out_dir)


def train_demo(
    data_dir: Path,
    out_dir: Path,
    recipe: Recipe,
    *,
    eval_dir: Path | None = None,
    device: str = "auto",
    time_budget_s: float | None = None,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Read, fit, save, evaluate; return the report also written to ``out_dir/training.json``."""
    import torch

    from visionnet.workers.models.loading import resolve_device

    device = resolve_device(device)
    timings: dict[str, float] = {}
    started = time.perf_counter()

    t0 = time.perf_counter()
    data = read_training_data(data_dir, recipe.image_size)
    timings["read_s"] = time.perf_counter() - t0
    mean, std = data.processor.image_mean, data.processor.image_std
    echo(
        f"read {len(data.targets)} images in {len(data.labels)} classes "
        f"({timings['read_s']:.1f} s); mean {mean} std {std}"
    )

    t0 = time.perf_counter()
    fitter = Fitter(data, recipe, device)
    epochs = recipe.epochs
    if time_budget_s is not None:
        per_step = fitter.seconds_per_step()
        remaining = time_budget_s - (time.perf_counter() - started)
        fit = int(remaining / (per_step * fitter.steps_per_epoch * 1.05))
        epochs = max(1, min(epochs, fit))
        echo(f"{per_step:.3f} s per step: {epochs} epochs fit the {time_budget_s:.0f} s budget")
    fitter.fit(epochs, echo)
    timings["train_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    fitter.save(out_dir)
    timings["save_s"] = time.perf_counter() - t0

    report: dict[str, Any] = {
        "recipe": asdict(recipe),
        "epochs_run": epochs,
        "train_images": len(data.targets),
        "labels": list(data.labels),
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "parameters": sum(p.numel() for p in fitter.model.parameters()),
    }
    if eval_dir is not None:
        t0 = time.perf_counter()
        report["eval_dir"] = eval_dir.name
        report.update(evaluate_saved(out_dir, eval_dir, data.labels, device))
        timings["eval_s"] = time.perf_counter() - t0
        echo(
            f"accuracy on {eval_dir}: {report['eval_accuracy']:.4f} "
            f"({report['eval_images']} images, {timings['eval_s']:.1f} s)"
        )
    timings["total_s"] = time.perf_counter() - started
    report["timings"] = {k: round(v, 2) for k, v in timings.items()}
    (out_dir / "training.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def predict_top1(model_dir: Path, files: LabeledFiles, device: str, batch: int = 512) -> list[str]:
    """Top-1 label per file, from the directory loaded by the service's own classifier code."""
    from visionnet.workers.models.classifier import Classifier

    classifier = Classifier(str(model_dir), device)
    labels: list[str] = []
    for i in range(0, len(files.paths), batch):
        labels.extend(classifier.top1(decode_rgb(files.paths[i : i + batch])))
    return labels


def evaluate_saved(
    model_dir: Path, eval_dir: Path, labels: tuple[str, ...], device: str
) -> dict[str, Any]:
    """Accuracy of the saved directory on a labeled folder with the training's classes."""
    files = scan_labeled_folder(eval_dir, labels)
    predicted = predict_top1(model_dir, files, device)
    correct = sum(label == labels[t] for label, t in zip(predicted, files.targets, strict=True))
    total = len(files.paths)
    return {"eval_images": total, "eval_accuracy": round(correct / total, 4)}
