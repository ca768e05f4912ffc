"""Train the demo classifier on a labeled folder and save it as a transformers model.

The runner logs each stage (read, train, evaluate, save) with its time; the
saved directory holds fp16 safetensors, the image processor, ``id2label`` and
``training.json`` (recipe, data, timings, accuracy) so the shipped weights say
how they were made.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from visionnet.training.architecture import demo_config, demo_processor
from visionnet.training.augment import alternating_flips, flip_where, translate
from visionnet.training.folder import (
    LabeledFiles,
    channel_stats,
    decode_rgb,
    scan_labeled_folder,
    to_tensor,
)
from visionnet.training.recipe import Recipe

CALIBRATION_STEPS = 3


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
    """Model, optimizer and one training step (airbench94's); the length is set by ``fit``."""

    def __init__(self, data: TrainingData, recipe: Recipe, device: str) -> None:
        import torch

        from visionnet.workers.models.cifarnet import (
            CifarNetForImageClassification,
            whiten_from_patches,
        )

        self.data, self.recipe, self.device = data, recipe, device
        torch.manual_seed(recipe.seed)
        self.gen = torch.Generator().manual_seed(recipe.seed)
        model: Any = CifarNetForImageClassification(demo_config(data.labels, widths=recipe.widths))
        whiten_from_patches(model.cifarnet.whiten, data.pixels[:5000])
        self.model = model.to(device).to(memory_format=torch.channels_last).train()
        self.whiten_bias = model.cifarnet.whiten.bias
        norm_biases = [p for n, p in model.named_parameters() if "norm" in n and p.requires_grad]
        others = [
            p
            for n, p in model.named_parameters()
            if p.requires_grad and "norm" not in n and not n.startswith("cifarnet.whiten.")
        ]
        model.cifarnet.whiten.weight.requires_grad = False  # set from the data, kept
        # airbench94's scaling: a summed loss, rates per example, decoupled decay.
        kilostep_scale = 1024 * (1 + 1 / (1 - recipe.momentum))
        lr = recipe.lr / kilostep_scale
        wd = recipe.weight_decay * recipe.batch_size / kilostep_scale
        lr_biases = lr * recipe.bias_scaler
        self.optimizer = torch.optim.SGD(
            [
                {"params": [self.whiten_bias], "lr": lr_biases, "weight_decay": wd / lr_biases},
                {"params": norm_biases, "lr": lr_biases, "weight_decay": wd / lr_biases},
                {"params": others, "lr": lr, "weight_decay": wd / lr},
            ],
            momentum=recipe.momentum,
            nesterov=True,
        )
        self.base_lrs = [group["lr"] for group in self.optimizer.param_groups]
        self.images = len(data.targets)
        self.batch = min(recipe.batch_size, self.images)
        self.steps_per_epoch = max(1, self.images // self.batch)
        self.base_flips = torch.rand(self.images, generator=self.gen) < 0.5
        self.autocast = torch.autocast(
            "cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda")
        )

    def step(self, indices: Any, epoch: int) -> float:
        import torch
        import torch.nn.functional as F

        xb = translate(self.data.pixels[indices], self.recipe.translate, self.gen)
        xb = flip_where(xb, alternating_flips(self.base_flips[indices], epoch))
        xb = xb.to(self.device).contiguous(memory_format=torch.channels_last)
        yb = self.data.targets[indices].to(self.device)
        with self.autocast:
            logits = self.model(pixel_values=xb).logits
        loss = F.cross_entropy(
            logits.float(), yb, label_smoothing=self.recipe.label_smoothing, reduction="sum"
        )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        self.optimizer.step()
        return float(loss.detach()) / len(indices)

    def seconds_per_step(self) -> float:
        """Time a few steps at a low rate (they count as training, and warm the kernels)."""
        import torch

        order = torch.randperm(self.images, generator=self.gen)
        self._set_rate(0.2)
        self.step(order[: self.batch], 0)  # the first step pays for one-time setup: untimed
        started = time.perf_counter()
        for i in range(1, CALIBRATION_STEPS + 1):
            first = (i % self.steps_per_epoch) * self.batch
            self.step(order[first : first + self.batch], 0)
        return (time.perf_counter() - started) / CALIBRATION_STEPS

    def _set_rate(self, factor: float) -> None:
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * factor

    def fit(
        self,
        total_steps: int,
        echo: Callable[[str], None],
        after_epoch: Callable[[int, float], None] | None = None,
    ) -> None:
        """Triangular schedule (0.2 -> 1 over 23% of the steps, then -> 0.07), lookahead."""
        import torch

        warmup = max(1, int(total_steps * 0.23))
        ema = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        step = 0
        epoch = 0
        while step < total_steps:
            started = time.perf_counter()
            self.whiten_bias.requires_grad = epoch < self.recipe.whiten_bias_epochs
            order = torch.randperm(self.images, generator=self.gen)
            losses = []
            for i in range(self.steps_per_epoch):
                if step >= total_steps:
                    break
                if step < warmup:
                    factor = 0.2 + 0.8 * step / warmup
                else:
                    factor = 1.0 - 0.93 * (step - warmup) / max(1, total_steps - warmup)
                self._set_rate(factor)
                losses.append(self.step(order[i * self.batch : (i + 1) * self.batch], epoch))
                step += 1
                if step % self.recipe.lookahead_every == 0:
                    self._lookahead(ema, 0.95**5 * (step / total_steps) ** 3)
            epoch += 1
            echo(
                f"epoch {epoch} ({step}/{total_steps} steps): loss "
                f"{sum(losses) / len(losses):.4f} ({time.perf_counter() - started:.1f} s)"
            )
            if after_epoch is not None:
                after_epoch(epoch, step / self.steps_per_epoch)
        if step % self.recipe.lookahead_every:
            self._lookahead(ema, 0.95**5)  # let the last steps into the average
        self._lookahead(ema, 1.0)  # end on the averaged weights

    def _lookahead(self, ema: dict[str, Any], decay: float) -> None:
        """Pull the weights towards their running average and start from it."""
        import torch

        with torch.no_grad():
            for key, value in self.model.state_dict().items():
                if value.dtype.is_floating_point:
                    ema[key].lerp_(value, 1 - decay)
                    value.copy_(ema[key])

    def accuracy(self, pixels: Any, targets: Any) -> float:
        """Top-1 on already-processed images, without flips: the training curve's points."""
        import torch

        self.model.eval()
        correct = 0
        with torch.inference_mode():
            for i in range(0, len(targets), 1000):
                xb = (
                    pixels[i : i + 1000]
                    .to(self.device)
                    .contiguous(memory_format=torch.channels_last)
                )
                logits = self.model(pixel_values=xb).logits
                correct += int((logits.argmax(-1).cpu() == targets[i : i + 1000]).sum())
        self.model.train()
        return correct / len(targets)

    def save(self, out_dir: Path) -> None:
        """Writer stage: fp16 safetensors, id2label and the processor (save_pretrained layout)."""
        self.model.eval()
        out_dir.mkdir(parents=True, exist_ok=True)
        self.model.to("cpu").half().save_pretrained(out_dir)
        self.data.processor.save_pretrained(out_dir)


def read_curve_set(files: LabeledFiles, data: TrainingData, count: int) -> tuple[Any, Any]:
    """Every k-th image of the eval folder, processed: the accuracy curve's test set."""
    import torch

    every = max(1, len(files.paths) // count)
    paths, targets = files.paths[::every][:count], files.targets[::every][:count]
    return to_tensor(decode_rgb(paths), data.processor), torch.tensor(targets)


def train_demo(
    data_dir: Path,
    out_dir: Path,
    recipe: Recipe,
    *,
    eval_dir: Path | None = None,
    device: str = "auto",
    time_budget_s: float | None = None,
    curve_images: int = 2000,
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

    eval_files = scan_labeled_folder(eval_dir, data.labels) if eval_dir is not None else None
    curve_set = None
    if eval_files is not None and curve_images > 0:
        curve_set = read_curve_set(eval_files, data, curve_images)

    t0 = time.perf_counter()
    fitter = Fitter(data, recipe, device)
    total_steps = max(1, math.ceil(recipe.epochs * fitter.steps_per_epoch))
    if time_budget_s is not None:
        per_step = fitter.seconds_per_step()
        # Keep time for the evaluations: a forward pass costs about a third of a step.
        per_image = per_step / fitter.batch / 3
        planned_epochs = total_steps / fitter.steps_per_epoch
        reserve = per_image * (
            (2.6 * len(eval_files.paths) if eval_files is not None else 0)
            + (len(curve_set[1]) * (planned_epochs + 1) if curve_set is not None else 0)
        )
        remaining = time_budget_s - (time.perf_counter() - started) - reserve
        total_steps = max(1, min(total_steps, int(remaining / (per_step * 1.03))))
        echo(
            f"{per_step:.3f} s per step: {total_steps} steps "
            f"({total_steps / fitter.steps_per_epoch:.2f} epochs) fit the "
            f"{time_budget_s:.0f} s budget"
        )
    curve: list[dict[str, float]] = []

    def point(epoch: int, epochs_done: float) -> None:
        if curve_set is None:
            return
        accuracy = fitter.accuracy(*curve_set)
        elapsed = time.perf_counter() - started
        curve.append(
            {
                "epochs": round(epochs_done, 2),
                "seconds": round(elapsed, 1),
                "accuracy": round(accuracy, 4),
            }
        )
        echo(f"  {elapsed / 60:.1f} min: accuracy {accuracy:.4f} on {len(curve_set[1])} images")

    fitter.fit(total_steps, echo, point)
    epochs = round(total_steps / fitter.steps_per_epoch, 2)
    timings["train_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    fitter.save(out_dir)
    timings["save_s"] = time.perf_counter() - t0

    report: dict[str, Any] = {
        "recipe": asdict(recipe),
        "epochs_run": epochs,
        "steps_run": total_steps,
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
    if curve:
        report["curve"] = curve
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
