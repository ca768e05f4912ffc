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
from dataclasses import asdict
from pathlib import Path
from typing import Any

from workers.models.demo import demo_config, demo_processor
from workers.training.augment import crop_and_flip
from workers.training.folder import channel_stats, decode_rgb, scan_labeled_folder, to_tensor
from workers.training.recipe import Recipe

CALIBRATION_STEPS = 10


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
    """Return the report also written to ``out_dir/training.json``."""
    import torch
    import torch.nn.functional as F
    from transformers import ResNetForImageClassification

    from workers.models.loading import resolve_device

    device = resolve_device(device)
    torch.manual_seed(recipe.seed)
    gen = torch.Generator().manual_seed(recipe.seed)
    timings: dict[str, float] = {}
    started = time.perf_counter()

    t0 = time.perf_counter()
    files = scan_labeled_folder(data_dir)
    images = decode_rgb(files.paths)
    mean, std = channel_stats(images)
    processor = demo_processor(recipe.image_size, mean, std)
    x_train = to_tensor(images, processor)
    y_train = torch.tensor(files.targets)
    del images
    timings["read_s"] = time.perf_counter() - t0
    echo(
        f"read {len(files.paths)} images in {len(files.labels)} classes "
        f"({timings['read_s']:.1f} s); mean {mean} std {std}"
    )

    model: Any = ResNetForImageClassification(
        demo_config(files.labels, hidden_sizes=recipe.hidden_sizes, depths=recipe.depths)
    )
    model.to(device).to(memory_format=torch.channels_last)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    optimizer = torch.optim.SGD(
        [
            {"params": decay, "weight_decay": recipe.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=recipe.max_lr / 25,
        momentum=recipe.momentum,
        nesterov=True,
    )
    batch = min(recipe.batch_size, len(files.paths))
    steps_per_epoch = len(files.paths) // batch
    pad = round(recipe.image_size * recipe.crop_pad_fraction)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda"))

    def step(indices: Any) -> float:
        xb = crop_and_flip(x_train[indices], pad, gen).to(device, non_blocking=True)
        xb = xb.contiguous(memory_format=torch.channels_last)
        yb = y_train[indices].to(device)
        with autocast:
            logits = model(pixel_values=xb).logits
        loss = F.cross_entropy(logits.float(), yb, label_smoothing=recipe.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        return float(loss.detach())

    model.train()
    epochs = recipe.epochs
    if time_budget_s is not None:
        # Time a few steps at the schedule's starting rate, then fit whole epochs in the budget.
        order = torch.randperm(len(files.paths), generator=gen)
        t_cal = time.perf_counter()
        for i in range(CALIBRATION_STEPS):
            start = (i % steps_per_epoch) * batch
            step(order[start : start + batch])
        per_step = (time.perf_counter() - t_cal) / CALIBRATION_STEPS
        remaining = time_budget_s - (time.perf_counter() - started)
        fit = int(remaining / (per_step * steps_per_epoch * 1.05))
        epochs = max(1, min(epochs, fit))
        echo(f"{per_step:.3f} s per step: {epochs} epochs fit the {time_budget_s:.0f} s budget")

    total_steps = epochs * steps_per_epoch
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=recipe.max_lr,
        total_steps=total_steps,
        pct_start=recipe.warmup_fraction,
        anneal_strategy="linear",
        div_factor=25.0,
        final_div_factor=1e3,
    )
    t0 = time.perf_counter()
    for epoch in range(epochs):
        t_epoch = time.perf_counter()
        order = torch.randperm(len(files.paths), generator=gen)
        losses = []
        last_lr = schedule.get_last_lr()[0]
        for i in range(steps_per_epoch):
            last_lr = schedule.get_last_lr()[0]
            losses.append(step(order[i * batch : (i + 1) * batch]))
            schedule.step()
        echo(
            f"epoch {epoch + 1}/{epochs}: loss {sum(losses) / len(losses):.4f} "
            f"lr {last_lr:.4f} ({time.perf_counter() - t_epoch:.1f} s)"
        )
    timings["train_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    model.eval()
    model.config.id2label = dict(enumerate(files.labels))
    model.config.label2id = {label: i for i, label in enumerate(files.labels)}
    out_dir.mkdir(parents=True, exist_ok=True)
    model.to("cpu").half().save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    timings["save_s"] = time.perf_counter() - t0

    report: dict[str, Any] = {
        "recipe": asdict(recipe),
        "epochs_run": epochs,
        "train_images": len(files.paths),
        "labels": list(files.labels),
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    if eval_dir is not None:
        t0 = time.perf_counter()
        report["eval_dir"] = eval_dir.name
        report.update(evaluate_saved(out_dir, eval_dir, files.labels, device))
        timings["eval_s"] = time.perf_counter() - t0
        echo(
            f"accuracy on {eval_dir}: {report['eval_accuracy']:.4f} "
            f"({report['eval_images']} images, {timings['eval_s']:.1f} s)"
        )
    timings["total_s"] = time.perf_counter() - started
    report["timings"] = {k: round(v, 2) for k, v in timings.items()}
    (out_dir / "training.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def evaluate_saved(
    model_dir: Path, eval_dir: Path, labels: tuple[str, ...], device: str, batch: int = 512
) -> dict[str, Any]:
    """Accuracy of the saved directory, loaded by the service's own classifier code."""
    from workers.models.classifier import Classifier

    files = scan_labeled_folder(eval_dir, labels)
    classifier = Classifier(str(model_dir), device)
    correct = 0
    for i in range(0, len(files.paths), batch):
        images = decode_rgb(files.paths[i : i + batch])
        predictions = classifier.predict(images, top_k=1)
        correct += sum(
            p[0].label == labels[t]
            for p, t in zip(predictions, files.targets[i : i + batch], strict=True)
        )
    total = len(files.paths)
    return {"eval_images": total, "eval_accuracy": round(correct / total, 4)}
