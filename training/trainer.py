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
    """Model, optimisers and one training step (airbench's); the length is set by ``fit``."""

    def __init__(self, data: TrainingData, recipe: Recipe, device: str) -> None:
        import torch

        from visionnet.workers.models.cifarnet import (
            CifarNetForImageClassification,
            whiten_from_patches,
        )

        self.data, self.recipe, self.device = data, recipe, device
        torch.manual_seed(recipe.seed)
        self.gen = torch.Generator().manual_seed(recipe.seed)
        muon = recipe.optimizer == "muon"
        # airbench94_muon's head: unit-variance weights, logits divided by the width.
        logit_scale = 1 / recipe.widths[-1] if muon else 1 / 9
        config = demo_config(data.labels, widths=recipe.widths, logit_scale=logit_scale)
        model: Any = CifarNetForImageClassification(config)
        if muon:
            with torch.no_grad():
                model.classifier.weight /= model.classifier.weight.std()
        whiten_from_patches(model.cifarnet.whiten, data.pixels[:5000])
        model.cifarnet.whiten.weight.requires_grad = False  # set from the data, kept
        self.model = model.to(device).to(memory_format=torch.channels_last).train()
        self.whiten_bias = model.cifarnet.whiten.bias
        self.images = len(data.targets)
        self.batch = min(recipe.batch_size, self.images)
        self.steps_per_epoch = max(1, self.images // self.batch)
        self.whiten_bias_steps = math.ceil(recipe.whiten_bias_epochs * self.steps_per_epoch)
        self.optimizers = self._muon_optimizers() if muon else self._sgd_optimizers()
        self.base_lrs = [[g["lr"] for g in opt.param_groups] for opt in self.optimizers]
        self.base_flips = torch.rand(self.images, generator=self.gen) < 0.5
        self.autocast = torch.autocast(
            "cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda")
        )

    def _param_groups(self) -> tuple[list[Any], list[Any], list[Any]]:
        """Norm shifts, conv filters, the head (the whitening bias is handled apart)."""
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        norms = [p for n, p in named if "norm" in n]
        filters = [p for n, p in named if p.ndim == 4]
        head = [p for n, p in named if n.startswith("classifier.")]
        return norms, filters, head

    def _muon_optimizers(self) -> list[Any]:
        import torch

        from visionnet.training.muon import FilterMuon

        r = self.recipe
        norms, filters, head = self._param_groups()
        wd = r.decay_per_example * self.batch
        sgd = torch.optim.SGD(
            [
                {"params": [self.whiten_bias], "lr": r.bias_lr, "weight_decay": wd / r.bias_lr},
                {"params": norms, "lr": r.bias_lr, "weight_decay": wd / r.bias_lr},
                {"params": head, "lr": r.head_lr, "weight_decay": wd / r.head_lr},
            ],
            momentum=r.momentum,
            nesterov=True,
        )
        return [sgd, FilterMuon(filters, lr=r.filter_lr, momentum=r.filter_momentum)]

    def _sgd_optimizers(self) -> list[Any]:
        import torch

        r = self.recipe
        norms, filters, head = self._param_groups()
        # airbench94's scaling: a summed loss, rates per example, decoupled decay.
        kilostep_scale = 1024 * (1 + 1 / (1 - r.momentum))
        lr = r.lr / kilostep_scale
        wd = r.weight_decay * r.batch_size / kilostep_scale
        lr_biases = lr * r.bias_scaler
        sgd = torch.optim.SGD(
            [
                {"params": [self.whiten_bias], "lr": lr, "weight_decay": wd / lr},
                {"params": norms, "lr": lr_biases, "weight_decay": wd / lr_biases},
                {"params": filters + head, "lr": lr, "weight_decay": wd / lr},
            ],
            momentum=r.momentum,
            nesterov=True,
        )
        return [sgd]

    def step(self, indices: Any, epoch: int) -> float:
        """One optimiser step over ``indices``, its gradient summed over micro-batches."""
        import torch
        import torch.nn.functional as F

        total = 0.0
        for part in indices.split(self.recipe.micro_batch):
            xb = translate(self.data.pixels[part], self.recipe.translate, self.gen)
            xb = flip_where(xb, alternating_flips(self.base_flips[part], epoch))
            xb = xb.to(self.device).contiguous(memory_format=torch.channels_last)
            yb = self.data.targets[part].to(self.device)
            with self.autocast:
                logits = self.model(pixel_values=xb).logits
            loss = F.cross_entropy(
                logits.float(), yb, label_smoothing=self.recipe.label_smoothing, reduction="sum"
            )
            loss.backward()  # type: ignore[no-untyped-call]
            total += float(loss.detach())
        for optimizer in self.optimizers:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return total / len(indices)

    def _set_rates(self, step: int, total_steps: int) -> None:
        """muon: all fall linearly to 0, the whitening bias within its own steps.

        sgd: triangular (0.2 -> 1 over 23% of the steps, then -> 0.07).
        """
        if self.recipe.optimizer == "muon":
            factor = 1 - step / total_steps
            whiten = max(0.0, 1 - step / self.whiten_bias_steps)
        else:
            warmup = max(1, int(total_steps * 0.23))
            if step < warmup:
                factor = 0.2 + 0.8 * step / warmup
            else:
                factor = 1.0 - 0.93 * (step - warmup) / max(1, total_steps - warmup)
            whiten = factor
        self.whiten_bias.requires_grad = step < self.whiten_bias_steps
        whiten_group = self.optimizers[0].param_groups[0]  # see the optimiser builders
        for optimizer, bases in zip(self.optimizers, self.base_lrs, strict=True):
            for group, base in zip(optimizer.param_groups, bases, strict=True):
                group["lr"] = base * (whiten if group is whiten_group else factor)

    def fit(
        self,
        plan: Callable[[int], int],
        echo: Callable[[str], None],
        after_epoch: Callable[[int, float], None] | None = None,
    ) -> int:
        """Train until ``plan(steps done)`` says the schedule is over; return the steps run.

        ``plan`` is asked again after every step, so a time budget can shorten
        the schedule as it learns the machine's speed; the rates follow.
        """
        import torch

        lookahead = self.recipe.optimizer == "sgd"
        ema = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        step = 0
        epoch = 0
        total_steps = plan(0)
        while step < total_steps:
            started = time.perf_counter()
            order = torch.randperm(self.images, generator=self.gen)
            losses = []
            for i in range(self.steps_per_epoch):
                if step >= total_steps:
                    break
                self._set_rates(step, total_steps)
                losses.append(self.step(order[i * self.batch : (i + 1) * self.batch], epoch))
                step += 1
                if lookahead and step % self.recipe.lookahead_every == 0:
                    self._lookahead(ema, 0.95**5 * (step / total_steps) ** 3)
                total_steps = max(step, plan(step))
            epoch += 1
            echo(
                f"epoch {epoch} ({step}/{total_steps} steps): loss "
                f"{sum(losses) / len(losses):.4f} ({time.perf_counter() - started:.1f} s)"
            )
            if after_epoch is not None:
                after_epoch(epoch, step / self.steps_per_epoch)
        if lookahead:
            if step % self.recipe.lookahead_every:
                self._lookahead(ema, 0.95**5)  # let the last steps into the average
            self._lookahead(ema, 1.0)  # end on the averaged weights
        return step

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


class BudgetPlan:
    """How many steps fit a time budget, re-estimated after every step.

    The first step pays for one-time setup, so the rate is timed from its end;
    time is kept for what follows training: the saved model's evaluation and
    the remaining curve points (a forward pass costs about a third of a step).
    """

    def __init__(
        self,
        planned: int,
        budget_s: float,
        started: float,
        fitter: Fitter,
        eval_images: int,
        curve_images: int,
    ) -> None:
        self.planned, self.budget_s, self.started = planned, budget_s, started
        self.fitter, self.eval_images, self.curve_images = fitter, eval_images, curve_images
        self.step_zero = started
        self.first_done: float | None = None
        self.per_step = 0.0
        self.steps = planned

    def __call__(self, step: int) -> int:
        now = time.perf_counter()
        if step == 0:
            self.step_zero = now
            return self.planned
        if step == 1:
            self.first_done = now
            self.per_step = now - self.step_zero
        else:
            assert self.first_done is not None
            self.per_step = (now - self.first_done) / (step - 1)
        per_image = self.per_step / self.fitter.batch / 3
        epochs_left = math.ceil((self.steps - step) / self.fitter.steps_per_epoch)
        reserve = per_image * (2.6 * self.eval_images + self.curve_images * epochs_left)
        remaining = self.budget_s - (now - self.started) - reserve
        self.steps = max(step, min(self.planned, step + int(remaining / self.per_step)))
        return self.steps

    def describe(self) -> str:
        return (
            f"{self.per_step:.3f} s per step: {self.steps} steps "
            f"({self.steps / self.fitter.steps_per_epoch:.2f} epochs) fit the "
            f"{self.budget_s:.0f} s budget"
        )


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
    planned = max(1, math.ceil(recipe.epochs * fitter.steps_per_epoch))
    budget = None
    if time_budget_s is not None:
        eval_images = len(eval_files.paths) if eval_files is not None else 0
        curve_count = len(curve_set[1]) if curve_set is not None else 0
        budget = BudgetPlan(planned, time_budget_s, started, fitter, eval_images, curve_count)
    curve: list[dict[str, float]] = []

    def after_epoch(epoch: int, epochs_done: float) -> None:
        if budget is not None:
            echo(budget.describe())
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

    steps_run = fitter.fit(budget if budget is not None else lambda _: planned, echo, after_epoch)
    epochs = round(steps_run / fitter.steps_per_epoch, 2)
    timings["train_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    fitter.save(out_dir)
    timings["save_s"] = time.perf_counter() - t0

    report: dict[str, Any] = {
        "recipe": asdict(recipe),
        "epochs_run": epochs,
        "steps_run": steps_run,
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
