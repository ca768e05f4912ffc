"""Near-duplicates: the measured precision/recall curve behind the default threshold, and
the duplicates job's time at 100,000 vectors.

``python -m bench.duplicates curve --photos ../shared/datasets/imagenet-sample-100
--cifar ../shared/datasets/cifar10-test`` (writes ``bench/results/duplicates.json`` and
``docs/duplicates-pr.png``; the plot needs the ``bench`` extra, matplotlib).

The labelled set: every photo (all 100 ImageNet photos; ``--cifar-originals`` CIFAR-10
test pictures, the same number from each class) and its transformed copies
(``COPIES``: resizes, JPEG re-encodes, crops of 80-95%, a flip, small rotations,
brightness and contrast, borders, a caption). Positives are the pairs of one photo's
items, (original, copy) and (copy, copy); negatives are the pairs of different
photos. Same-class negatives (CIFAR-10: other pictures of the class) are the hard
ones and are counted apart; the ImageNet sample has one photo per class, so it has
none.

Two pair sets per threshold ``t``:

- ``grouped``, what the duplicates job returns: each item's ``--k`` nearest
  neighbours with cosine ≥ t are joined by union-find, and every pair inside a
  group counts as "said to be duplicates" (so a chain can join two photos whose
  own cosine is below t). Computed exactly at every distinct neighbour score.
- ``direct``: a pair's own cosine ≥ t (a grid of 1e-4), for reference.

The default is the threshold with grouped precision ≥ 0.99 and the highest recall,
on the photos with the demo model. Models: the demo model through the project's
``Embedder`` (the worker's runtime settings as they stand), and two references that
need no model: a 16x16 grey thumbnail (``pixels16``) and a 64-bit DCT perceptual
hash (``phash64``, as a ±1 vector: cosine = 1 - 2 x Hamming / 64).

``python -m bench.duplicates scale --train DIR --engine lite`` times the duplicates
job over a 100,000-vector collection (see ``scale`` below).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps
from rich.console import Console
from rich.table import Table

from bench.images import images_under
from bench.report import spread, write_report

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "workers" / "models" / "weights" / "demo-cifar10"
OUT = REPO / "bench" / "results" / "duplicates.json"
PLOT = REPO / "docs" / "duplicates-pr.png"
TARGET_PRECISION = 0.99
GOAL_RECALL = 0.95
Vectors = NDArray[np.float32]


# ---------------------------------------------------------------- the copies


def _resize(f: float) -> Callable[[Image.Image, random.Random], Image.Image]:
    def run(img: Image.Image, _: random.Random) -> Image.Image:
        w, h = img.size
        return img.resize((max(1, round(w * f)), max(1, round(h * f))), Image.Resampling.BICUBIC)

    return run


def _jpeg(quality: int) -> Callable[[Image.Image, random.Random], Image.Image]:
    def run(img: Image.Image, _: random.Random) -> Image.Image:
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=quality)
        return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")

    return run


def _crop(f: float) -> Callable[[Image.Image, random.Random], Image.Image]:
    """Keep ``f`` of the width and height, at a random place (seeded per photo)."""

    def run(img: Image.Image, rng: random.Random) -> Image.Image:
        w, h = img.size
        cw, ch = max(1, round(w * f)), max(1, round(h * f))
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        return img.crop((x, y, x + cw, y + ch))

    return run


def _rotate(deg: float) -> Callable[[Image.Image, random.Random], Image.Image]:
    def run(img: Image.Image, _: random.Random) -> Image.Image:
        return img.rotate(deg, resample=Image.Resampling.BICUBIC, fillcolor=(0, 0, 0))

    return run


def _enhance(
    kind: type[ImageEnhance.Brightness] | type[ImageEnhance.Contrast], f: float
) -> Callable[[Image.Image, random.Random], Image.Image]:
    def run(img: Image.Image, _: random.Random) -> Image.Image:
        return kind(img).enhance(f)

    return run


def _border(frac: float, color: tuple[int, int, int]) -> Callable[..., Image.Image]:
    def run(img: Image.Image, _: random.Random) -> Image.Image:
        return ImageOps.expand(img, border=max(1, round(min(img.size) * frac)), fill=color)

    return run


def _caption(img: Image.Image, _: random.Random) -> Image.Image:
    """A white caption with a dark outline along the bottom, a tenth of the height tall."""
    out = img.copy()
    w, h = out.size
    size = max(6, h // 10)
    font = ImageFont.load_default(size=size)
    draw = ImageDraw.Draw(out)
    draw.text(
        (max(1, w // 40), h - size - max(1, h // 40)),
        "(c) 2026 visionnet holiday",
        font=font,
        fill=(255, 255, 255),
        stroke_width=max(1, size // 12),
        stroke_fill=(0, 0, 0),
    )
    return out


# name -> (kind, transform); the kind is what the per-transform recall groups by.
COPIES: dict[str, tuple[str, Callable[[Image.Image, random.Random], Image.Image]]] = {
    "resize_75": ("resize", _resize(0.75)),
    "resize_50": ("resize", _resize(0.5)),
    "resize_25": ("resize", _resize(0.25)),
    "jpeg_q75": ("jpeg", _jpeg(75)),
    "jpeg_q50": ("jpeg", _jpeg(50)),
    "jpeg_q30": ("jpeg", _jpeg(30)),
    "jpeg_q15": ("jpeg", _jpeg(15)),
    "crop_95": ("crop", _crop(0.95)),
    "crop_90": ("crop", _crop(0.90)),
    "crop_85": ("crop", _crop(0.85)),
    "crop_80": ("crop", _crop(0.80)),
    "flip": ("flip", lambda img, _: ImageOps.mirror(img)),
    "rotate_+3": ("rotate", _rotate(3)),
    "rotate_-5": ("rotate", _rotate(-5)),
    "brightness_1.3": ("brightness", _enhance(ImageEnhance.Brightness, 1.3)),
    "brightness_0.7": ("brightness", _enhance(ImageEnhance.Brightness, 0.7)),
    "contrast_1.3": ("contrast", _enhance(ImageEnhance.Contrast, 1.3)),
    "contrast_0.7": ("contrast", _enhance(ImageEnhance.Contrast, 0.7)),
    "border_white_10": ("border", _border(0.10, (255, 255, 255))),
    "border_black_5": ("border", _border(0.05, (0, 0, 0))),
    "caption": ("text", _caption),
}


@dataclass
class LabelledSet:
    """Items (originals and copies) with the photo and class each belongs to."""

    name: str
    images: list[Image.Image] = field(default_factory=list)
    photo: list[int] = field(default_factory=list)
    klass: list[str] = field(default_factory=list)
    copy: list[str] = field(default_factory=list)  # "original" or a COPIES name
    source: list[str] = field(default_factory=list)

    def add_photo(self, path: Path, klass: str, seed: int) -> None:
        with Image.open(path) as im:
            original = im.convert("RGB")
        pid = len(set(self.photo))
        rng = random.Random(seed)
        for name, img in [("original", original)] + [
            (name, fn(original, rng)) for name, (_, fn) in COPIES.items()
        ]:
            self.images.append(img.convert("RGB"))
            self.photo.append(pid)
            self.klass.append(klass)
            self.copy.append(name)
            self.source.append(path.name)


def photos_set(folder: Path) -> LabelledSet:
    """Every ImageNet photo: ``<wordnet id>_<class>.JPEG``, one per class."""
    out = LabelledSet("photos")
    for n, path in enumerate(images_under(folder)):
        out.add_photo(path, path.stem.split("_", 1)[0], seed=n)
    return out


def cifar_set(folder: Path, originals: int, seed: int = 0) -> LabelledSet:
    """``originals`` CIFAR-10 test pictures, as many of each class (its folder name)."""
    rng = random.Random(seed)
    classes = sorted(p for p in folder.iterdir() if p.is_dir())
    per_class = max(1, originals // len(classes))
    out = LabelledSet("cifar10")
    n = 0
    for cdir in classes:
        for path in sorted(rng.sample(images_under(cdir), per_class)):
            out.add_photo(path, cdir.name, seed=n)
            n += 1
    return out


# ---------------------------------------------------------------- the vectors


def demo_embedder() -> Any:
    """The demo model through the project's Embedder, with the worker's runtime settings."""
    from visionnet.config.settings import get_settings
    from visionnet.workers.models.embedder import Embedder
    from visionnet.workers.models.loading import resolve_device
    from visionnet.workers.models.runtime import Runtime

    settings = get_settings()
    m = settings.models
    # as the model worker builds it (model_worker/context.py)
    runtime = Runtime(
        backend=m.runtime,
        precision=m.precision,
        channels_last=m.channels_last,
        compile=m.compile,
        flip_invariant=m.flip_invariant,
        onnx_cache=str(Path(tempfile.gettempdir()) / "visionnet-bench-onnx"),
    )
    return Embedder(str(DEMO), resolve_device(m.device), runtime=runtime)


def describe_embedder(embedder: Any) -> dict[str, Any]:
    """What GET /api/v1/models would say about it, plus the dtype the weights run in."""
    out: dict[str, Any] = {"info": dict(embedder.info), "dtype": str(embedder.dtype)}
    choice = getattr(embedder, "choice", None)
    if choice is not None:
        out["choice"] = {
            k: getattr(choice, k) for k in ("runtime", "precision", "reason") if hasattr(choice, k)
        }
    out["runtime_settings"] = repr(embedder.runtime)
    return out


def embed_demo(embedder: Any, images: list[Image.Image], batch: int = 64) -> Vectors:
    return np.concatenate(
        [embedder.embed(images[i : i + batch]) for i in range(0, len(images), batch)]
    )


def pixels16(images: list[Image.Image]) -> Vectors:
    """A 16x16 grey thumbnail, mean removed, unit length: the cheapest "tiny image" vector."""
    out = np.empty((len(images), 256), np.float32)
    for i, img in enumerate(images):
        a = np.asarray(img.convert("L").resize((16, 16), Image.Resampling.BOX), np.float32)
        a = a.ravel() - a.mean()
        out[i] = a / max(float(np.linalg.norm(a)), 1e-6)
    return out


def _dct_matrix(n: int) -> NDArray[np.float64]:
    k = np.arange(n)[:, None]
    x = np.arange(n)[None, :]
    return np.cos(np.pi * (2 * x + 1) * k / (2 * n))


def phash64(images: list[Image.Image]) -> Vectors:
    """pHash: the 8x8 lowest DCT frequencies of a 32x32 grey image (DC left out) against
    their median, as ±1/8 (unit length), so cosine = 1 - 2 x Hamming / 64."""
    d = _dct_matrix(32)
    out = np.empty((len(images), 64), np.float32)
    for i, img in enumerate(images):
        a = np.asarray(img.convert("L").resize((32, 32), Image.Resampling.BOX), np.float64)
        low = (d @ a @ d.T)[:8, :8].ravel()
        bits = low > np.median(low[1:])
        out[i] = np.where(bits, 1.0, -1.0) / 8.0
    return out


# ---------------------------------------------------------------- the curves


def neighbours(vectors: Vectors, k: int, chunk: int = 2048) -> tuple[NDArray[Any], Vectors]:
    """Each item's ``k`` nearest other items by cosine (exact), and their scores."""
    n = len(vectors)
    k = min(k, n - 1)
    idx = np.empty((n, k), np.int64)
    sc = np.empty((n, k), np.float32)
    for s in range(0, n, chunk):
        block = vectors[s : s + chunk] @ vectors.T
        rows = np.arange(len(block))
        block[rows, rows + s] = -np.inf
        part = np.argpartition(-block, k - 1, axis=1)[:, :k]
        idx[s : s + chunk] = part
        sc[s : s + chunk] = block[rows[:, None], part]
    return idx, sc


def edges_of(idx: NDArray[Any], sc: Vectors) -> tuple[NDArray[Any], NDArray[Any], Vectors]:
    """The neighbour pairs once each (i < j), highest score first."""
    n, k = idx.shape
    i = np.repeat(np.arange(n), k)
    j = idx.ravel()
    s = sc.ravel()
    a, b = np.minimum(i, j), np.maximum(i, j)
    key = a * n + b
    _, first = np.unique(key, return_index=True)
    a, b, s = a[first], b[first], s[first]
    order = np.argsort(-s, kind="stable")
    return a[order], b[order], s[order]


class Groups:
    """Union-find whose groups count their items per photo and per class, so the pairs
    a merge joins (all of them, the same photo's, the same class') are counted exactly."""

    def __init__(self, photo: list[int], klass: list[str]) -> None:
        n = len(photo)
        self.parent = list(range(n))
        self.photos: list[Counter[int]] = [Counter([p]) for p in photo]
        self.classes: list[Counter[str]] = [Counter([c]) for c in klass]
        self.size = [1] * n

    def find(self, x: int) -> int:
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: int, b: int) -> tuple[int, int, int] | None:
        """Merge; (pairs joined, same-photo pairs, same-class pairs), None if one group."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return None
        if self.size[ra] < self.size[rb]:
            ra, rb = rb, ra
        joined = self.size[ra] * self.size[rb]
        same_photo = sum(c * self.photos[ra].get(p, 0) for p, c in self.photos[rb].items())
        same_class = sum(c * self.classes[ra].get(k, 0) for k, c in self.classes[rb].items())
        self.photos[ra].update(self.photos[rb])
        self.classes[ra].update(self.classes[rb])
        self.photos[rb] = Counter()
        self.classes[rb] = Counter()
        self.size[ra] += self.size[rb]
        self.parent[rb] = ra
        return joined, same_photo, same_class


@dataclass
class Totals:
    positives: int
    negatives: int
    same_class_negatives: int


def totals(ls: LabelledSet) -> Totals:
    n = len(ls.photo)
    per_photo = Counter(ls.photo)
    per_class = Counter(ls.klass)
    pos = sum(c * (c - 1) // 2 for c in per_photo.values())
    same_class = sum(c * (c - 1) // 2 for c in per_class.values()) - pos
    return Totals(pos, n * (n - 1) // 2 - pos, same_class)


def grouped_curve(ls: LabelledSet, vectors: Vectors, k: int, floor: float) -> dict[str, Any]:
    """Precision and recall of the job's groups at every distinct neighbour score ≥ floor."""
    t = totals(ls)
    a, b, s = edges_of(*neighbours(vectors, k))
    keep = s >= floor
    a, b, s = a[keep], b[keep], s[keep]
    g = Groups(ls.photo, ls.klass)
    tp = fp = fp_same_class = 0
    thr: list[float] = []
    prec: list[float] = []
    rec: list[float] = []
    fpsc: list[float] = []
    for n in range(len(s)):
        merged = g.union(int(a[n]), int(b[n]))
        if merged is not None:
            joined, same_photo, same_class = merged
            tp += same_photo
            fp += joined - same_photo
            fp_same_class += same_class - same_photo
        if n + 1 < len(s) and s[n + 1] == s[n]:
            continue  # ties: one point per distinct score
        if merged is not None or not thr:
            thr.append(float(s[n]))
            prec.append(tp / (tp + fp) if tp + fp else 1.0)
            rec.append(tp / t.positives)
            fpsc.append(fp_same_class / t.same_class_negatives if t.same_class_negatives else 0.0)
    return {
        "threshold": thr,
        "precision": prec,
        "recall": rec,
        "same_class_false_rate": fpsc,
    }


def direct_curve(ls: LabelledSet, vectors: Vectors, step: float = 1e-4) -> dict[str, Any]:
    """Precision and recall of "a pair's own cosine ≥ t" on a grid of ``step``."""
    t = totals(ls)
    bins = round(2 / step) + 1
    photo = np.asarray(ls.photo)
    codes = {c: i for i, c in enumerate(sorted(set(ls.klass)))}
    klass = np.asarray([codes[c] for c in ls.klass])
    pos = np.zeros(bins, np.int64)
    neg = np.zeros(bins, np.int64)
    neg_sc = np.zeros(bins, np.int64)
    n = len(vectors)
    for s in range(0, n, 1024):
        block = vectors[s : s + 1024] @ vectors.T
        rows = np.arange(s, min(s + 1024, n))
        upper = np.arange(n)[None, :] > rows[:, None]
        q = np.clip(np.floor((block + 1) / step).astype(np.int64), 0, bins - 1)
        same = photo[rows][:, None] == photo[None, :]
        sc = (klass[rows][:, None] == klass[None, :]) & ~same
        pos += np.bincount(q[upper & same], minlength=bins)
        neg += np.bincount(q[upper & ~same], minlength=bins)
        neg_sc += np.bincount(q[upper & sc], minlength=bins)
    # pairs with score >= threshold: cumulative from the top
    tp = np.cumsum(pos[::-1])[::-1]
    fp = np.cumsum(neg[::-1])[::-1]
    fpsc = np.cumsum(neg_sc[::-1])[::-1]
    thr = np.arange(bins) * step - 1
    lo = int(np.argmax((tp + fp) > 0))  # below the first bin with a pair nothing changes
    sel = np.arange(lo, bins)
    sel = sel[(thr[sel] >= 0.0)]
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 1.0)
    return {
        "threshold": [round(float(x), 6) for x in thr[sel]],
        "precision": precision[sel].tolist(),
        "recall": (tp[sel] / t.positives).tolist(),
        "same_class_false_rate": (
            (fpsc[sel] / t.same_class_negatives).tolist()
            if t.same_class_negatives
            else [0.0] * len(sel)
        ),
    }


def best_threshold(curve: dict[str, Any], target: float = TARGET_PRECISION) -> dict[str, Any]:
    """The threshold with precision ≥ target and the highest recall (the lowest such, as
    recall only grows as the threshold falls); its precision and recall."""
    best: dict[str, Any] | None = None
    for t, p, r in zip(curve["threshold"], curve["precision"], curve["recall"], strict=True):
        if p >= target and (best is None or r > best["recall"]):
            best = {"threshold": t, "precision": p, "recall": r}
    return best or {"threshold": None, "precision": None, "recall": 0.0}


def at_threshold(curve: dict[str, Any], t: float) -> dict[str, float]:
    """The curve's point at threshold ``t``: the lowest recorded threshold ≥ t (the
    grouped curve runs from high to low, the direct one from low to high)."""
    best = None
    for n, x in enumerate(curve["threshold"]):
        if x >= t and (best is None or x < curve["threshold"][best]):
            best = n
    if best is None:
        return {"threshold": t, "precision": 1.0, "recall": 0.0, "same_class_false_rate": 0.0}
    return {
        "threshold": t,
        "precision": curve["precision"][best],
        "recall": curve["recall"][best],
        "same_class_false_rate": curve["same_class_false_rate"][best],
    }


def group_labels(n: int, vectors: Vectors, k: int, t: float) -> list[int]:
    """Each item's group at threshold ``t``, as the job would form them."""
    a, b, s = edges_of(*neighbours(vectors, k))
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j in zip(a[s >= t].tolist(), b[s >= t].tolist(), strict=True):
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[ri] = rj
    return [find(x) for x in range(n)]


def per_copy(ls: LabelledSet, vectors: Vectors, k: int, t: float) -> dict[str, Any]:
    """Recall of (original, copy) pairs at ``t`` per copy kind, grouped and direct, with
    the photos whose copy was missed (grouped)."""
    labels = group_labels(len(vectors), vectors, k, t)
    origin = {
        p: i for i, (p, c) in enumerate(zip(ls.photo, ls.copy, strict=True)) if c == "original"
    }
    out: dict[str, Any] = {}
    for name in COPIES:
        hits = direct = total = 0
        missed: list[str] = []
        for i, (p, c) in enumerate(zip(ls.photo, ls.copy, strict=True)):
            if c != name:
                continue
            total += 1
            o = origin[p]
            if labels[i] == labels[o]:
                hits += 1
            else:
                missed.append(ls.source[i])
            direct += int(float(vectors[i] @ vectors[o]) >= t)
        out[name] = {
            "kind": COPIES[name][0],
            "grouped_recall": hits / total,
            "direct_recall": direct / total,
            "missed": missed[:20],
            "missed_count": len(missed),
        }
    return out


def copy_scores(ls: LabelledSet, vectors: Vectors) -> dict[str, dict[str, float]]:
    """Cosine of each copy to its original, per copy kind: min, median."""
    origin = {
        p: i for i, (p, c) in enumerate(zip(ls.photo, ls.copy, strict=True)) if c == "original"
    }
    out: dict[str, dict[str, float]] = {}
    for name in COPIES:
        s = [
            float(vectors[i] @ vectors[origin[p]])
            for i, (p, c) in enumerate(zip(ls.photo, ls.copy, strict=True))
            if c == name
        ]
        out[name] = {"min": min(s), "median": float(np.median(s))}
    return out


def thin(curve: dict[str, Any], points: int = 400) -> dict[str, Any]:
    """At most ``points`` points of a curve, evenly along recall, for the JSON."""
    n = len(curve["threshold"])
    keep: list[int] = list(range(n))
    if n > points:
        rec = np.asarray(curve["recall"])
        picks = {int(np.argmin(np.abs(rec - r))) for r in np.linspace(0, rec.max(), points)}
        keep = sorted(picks)
    return {key: [round(vals[i], 6) for i in keep] for key, vals in curve.items()}


# ---------------------------------------------------------------- the plot


def plot(models: dict[str, Any], default: float, path: Path) -> None:
    """Precision against recall per model and data set, each model's default marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(next(iter(models.values()))["sets"])
    fig, axes = plt.subplots(1, len(sets), figsize=(6.2 * len(sets), 5.0), squeeze=False)
    colours = {"demo": "tab:blue", "pixels16": "tab:orange", "phash64": "tab:green"}
    for ax, set_name in zip(axes[0], sets, strict=True):
        for model, data in models.items():
            m = data["sets"][set_name]
            c = colours.get(model)
            g, d = m["grouped"], m["direct"]
            ax.plot(g["recall"], g["precision"], color=c, label=f"{model}, job's groups")
            ax.plot(d["recall"], d["precision"], color=c, ls=":", lw=1, label=f"{model}, direct")
            b = m["best"]
            if b["threshold"] is not None:
                ax.plot([b["recall"]], [b["precision"]], "o", color=c, ms=5)
                ax.annotate(
                    f"{b['threshold']:.3f}",
                    (b["recall"], b["precision"]),
                    textcoords="offset points",
                    xytext=(-10, -14),
                    fontsize=7,
                    color=c,
                )
            if model == "demo":
                at = m["at_default"]
                ax.plot([at["recall"]], [at["precision"]], "*", color="black", ms=11, zorder=5)
                ax.text(
                    0.98,
                    0.3,
                    f"demo at the default {default}:\n"
                    f"precision {at['precision']:.3f}, recall {at['recall']:.3f}",
                    transform=ax.transAxes,
                    ha="right",
                    fontsize=8,
                    bbox={"facecolor": "white", "edgecolor": "grey", "alpha": 0.9},
                )
        ax.axhline(TARGET_PRECISION, color="grey", lw=0.6, ls="--")
        ax.axvline(GOAL_RECALL, color="grey", lw=0.6, ls="--")
        ax.set_xlim(0, 1.0)
        ax.set_ylim(0.5, 1.005)
        ax.set_xlabel("recall (pairs of one photo's items)")
        ax.set_ylabel("precision")
        ax.set_title(data_title(set_name))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    fig.suptitle("Near-duplicate pairs: precision against recall over cosine thresholds")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def data_title(name: str) -> str:
    return {
        "photos": "ImageNet photos (100 x 22 items)",
        "cifar10": "CIFAR-10 test, 32x32 (same-class hard negatives)",
    }.get(name, name)


# ---------------------------------------------------------------- the curve command


def run_curve(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    t0 = time.perf_counter()
    sets = [photos_set(args.photos)]
    if args.cifar_originals > 0:
        sets.append(cifar_set(args.cifar, args.cifar_originals))
    console.print(
        ", ".join(f"{s.name}: {len(set(s.photo))} photos, {len(s.images)} items" for s in sets)
        + f" ({time.perf_counter() - t0:.1f} s to make)"
    )
    embedder = demo_embedder()
    about = describe_embedder(embedder)
    console.print(f"demo model: {about}")
    makers: dict[str, Callable[[list[Image.Image]], Vectors]] = {
        "demo": lambda imgs: embed_demo(embedder, imgs),
        "pixels16": pixels16,
        "phash64": phash64,
    }
    models: dict[str, Any] = {}
    for model, make in makers.items():
        models[model] = {"sets": {}, "vector_s": {}}
        for ls in sets:
            t1 = time.perf_counter()
            vec = make(ls.images)
            models[model]["vector_s"][ls.name] = round(time.perf_counter() - t1, 2)
            t2 = time.perf_counter()
            g = grouped_curve(ls, vec, args.k, args.floor)
            d = direct_curve(ls, vec)
            models[model]["sets"][ls.name] = {
                "grouped": g,
                "direct": d,
                "best": best_threshold(g),
                "best_direct": best_threshold(d),
                "copy_cosine": copy_scores(ls, vec),
                "vectors": vec,
            }
            console.print(
                f"{model} / {ls.name}: vectors {models[model]['vector_s'][ls.name]} s, "
                f"curves {time.perf_counter() - t2:.1f} s, best {best_threshold(g)}"
            )
    photos_best = models["demo"]["sets"]["photos"]["best"]["threshold"]
    default = args.default if args.default is not None else round_default(photos_best)
    for model, data in models.items():
        for ls in sets:
            m = data["sets"][ls.name]
            m["at_default"] = at_threshold(m["grouped"], default)
            m["at_default_direct"] = at_threshold(m["direct"], default)
            vec = m.pop("vectors")
            at = m["best"]["threshold"]
            m["per_copy_at_best"] = per_copy(ls, vec, args.k, at) if at is not None else {}
            m["per_copy_at_default"] = per_copy(ls, vec, args.k, default) if model == "demo" else {}
    plot(models, default, args.plot)
    for data in models.values():
        for m in data["sets"].values():
            m["grouped"] = thin(m["grouped"])
            m["direct"] = thin(m["direct"])
    return {
        "sets": {
            s.name: {
                "photos": len(set(s.photo)),
                "items": len(s.images),
                **totals(s).__dict__,
            }
            for s in sets
        },
        "copies": {name: kind for name, (kind, _) in COPIES.items()},
        "k": args.k,
        "demo_model": about,
        "best_rule": f"grouped precision >= {TARGET_PRECISION}, highest recall",
        "measured_threshold": photos_best,
        "default": default,
        "models": models,
        "not_plotted": "a random-weights CLIP: its vectors mean nothing about the photos, so "
        "its curve would say nothing about a real CLIP; no trained CLIP can be fetched here",
        "seconds": round(time.perf_counter() - t0, 1),
    }


def round_default(t: float | None) -> float:
    """Up to the next 0.01: a little recall for precision on sets this small."""
    if t is None:
        return 1.0
    return float(np.ceil(t * 100 - 1e-9) / 100)


def curve_table(report: dict[str, Any], console: Console) -> None:
    table = Table(title="Near-duplicate pairs (job's groups): best threshold and the default")
    for col in (
        "model",
        "set",
        "best t (P≥0.99)",
        "P",
        "R",
        f"P at {report['default']}",
        f"R at {report['default']}",
        "same-class false",
    ):
        table.add_column(col)
    for model, data in report["models"].items():
        for name, m in data["sets"].items():
            b, d = m["best"], m["at_default"]
            table.add_row(
                model,
                name,
                "-" if b["threshold"] is None else f"{b['threshold']:.4f}",
                "-" if b["precision"] is None else f"{b['precision']:.4f}",
                f"{b['recall']:.4f}",
                f"{d['precision']:.4f}",
                f"{d['recall']:.4f}",
                f"{d['same_class_false_rate']:.2e}",
            )
    console.print(table)
    table = Table(
        title=f"demo model: recall of (original, copy) at the default {report['default']}"
    )
    table.add_column("copy")
    for name in report["sets"]:
        table.add_column(f"{name} grouped")
        table.add_column(f"{name} direct")
        table.add_column(f"{name} cos min/med")
    for copy in COPIES:
        row = [copy]
        for name in report["sets"]:
            m = report["models"]["demo"]["sets"][name]
            pc = m["per_copy_at_default"][copy]
            cs = m["copy_cosine"][copy]
            row += [
                f"{pc['grouped_recall']:.3f}",
                f"{pc['direct_recall']:.3f}",
                f"{cs['min']:.3f} / {cs['median']:.3f}",
            ]
        table.add_row(*row)
    console.print(table)


def job_k() -> int:
    """The job's neighbours per image (the ``duplicates.neighbours`` setting), else 10."""
    from visionnet.config.settings import get_settings

    dup = getattr(get_settings(), "duplicates", None)
    return int(getattr(dup, "neighbours", 10))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="part", required=True)
    c = sub.add_parser("curve", help="The precision/recall curves and the default threshold.")
    c.add_argument("--photos", type=Path, required=True, help="imagenet-sample-100")
    c.add_argument("--cifar", type=Path, required=True, help="cifar10-test (class folders)")
    c.add_argument("--cifar-originals", type=int, default=1000, help="0: photos only.")
    c.add_argument(
        "--k", type=int, default=job_k(), help="Neighbours per item (duplicates.neighbours)."
    )
    c.add_argument("--floor", type=float, default=0.5, help="Lowest threshold on the curve.")
    c.add_argument("--default", type=float, default=None, help="Mark this default instead.")
    c.add_argument("--plot", type=Path, default=PLOT)
    c.add_argument("--out", type=Path, default=OUT)
    add_scale_parser(sub)
    args = parser.parse_args(argv)
    console = Console(width=160)
    old = json.loads(args.out.read_text()) if args.out.exists() else {}
    if args.part == "curve":
        report = run_curve(args, console)
        curve_table(report, console)
        old["curve"] = report
    else:
        old["scale"] = {**old.get("scale", {}), **run_scale(args, console)}
    write_report(args.out, {k: v for k, v in old.items() if k not in ("machine", "date")}, console)


# ---------------------------------------------------------------- the job at scale


def add_scale_parser(sub: Any) -> None:
    s = sub.add_parser("scale", help="Time the duplicates job over a 100,000-vector collection.")
    s.add_argument("--train", type=Path, required=True, help="cifar10-train, extracted")
    s.add_argument("--engine", choices=["lite", "server"], default="lite")
    s.add_argument("--vectors", type=int, default=100_000)
    s.add_argument("--threshold", type=float, default=None, help="Default: the setting's.")
    s.add_argument("--repeats", type=int, default=3)
    s.add_argument("--cache", type=Path, default=Path("/tmp/visionnet-bench-dups-train.npy"))
    s.add_argument("--out", type=Path, default=OUT)


def train_vectors(train: Path, cache: Path, batch: int = 256) -> Vectors:
    """The demo model's vectors of every picture under ``train``, in path order (cached)."""
    if cache.exists():
        return np.asarray(np.load(cache), np.float32)
    embedder = demo_embedder()
    paths = images_under(train)
    out = []
    for s in range(0, len(paths), batch):
        images = []
        for path in paths[s : s + batch]:
            with Image.open(path) as img:
                images.append(img.convert("RGB"))
        out.append(embedder.embed(images))
    vectors = np.concatenate(out)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, vectors)
    return vectors


def with_copies(real: Vectors, count: int, cosine: float = 0.98, seed: int = 0) -> Vectors:
    """``real`` and then ``count - len(real)`` copies of its first rows, each the row plus
    Gaussian noise (about ``cosine`` to it, renormalised): a copy per photo."""
    rng = np.random.default_rng(seed)
    extra = count - len(real)
    base = real[np.arange(extra) % len(real)]
    dim = real.shape[1]
    sigma = np.sqrt(1 / cosine**2 - 1) / np.sqrt(dim)
    noisy = base + rng.standard_normal(base.shape).astype(np.float32) * sigma
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    return np.concatenate([real, noisy.astype(np.float32)])


def write_export(path: Path, vectors: Vectors, model: str) -> None:
    """An export job's Parquet file of ``vectors`` (the columns ``visionnet import`` reads)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    dim = vectors.shape[1]
    schema = pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("path", pa.string(), nullable=False),
            pa.field("size", pa.int64(), nullable=False),
            pa.field("width", pa.int32(), nullable=False),
            pa.field("height", pa.int32(), nullable=False),
            pa.field("indexed_at", pa.int64(), nullable=False),
            pa.field("label", pa.string(), nullable=False),
            pa.field("label_score", pa.float32(), nullable=False),
            pa.field("vector", pa.list_(pa.float32(), dim), nullable=False),
        ],
        metadata={"collection": "dups", "model": model},
    )
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for s in range(0, len(vectors), 4096):
            n = min(4096, len(vectors) - s)
            rows = range(s, s + n)
            columns = {
                "id": [hashlib.sha256(str(i).encode()).hexdigest() for i in rows],
                "path": [f"/photos/{i // 1000:03d}/{i:06d}.jpg" for i in rows],
                "size": np.full(n, 2_000, np.int64),
                "width": np.full(n, 32, np.int32),
                "height": np.full(n, 32, np.int32),
                "indexed_at": np.full(n, 1_700_000_000, np.int64),
                "label": [""] * n,
                "label_score": np.zeros(n, np.float32),
                "vector": pa.FixedSizeListArray.from_arrays(
                    pa.array(vectors[s : s + n].ravel()), dim
                ),
            }
            writer.write_table(pa.table(columns, schema=schema))


def run_scale(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    """The duplicates job's time over a ``--vectors`` collection on a private stack.

    The collection: the demo model's vectors of the 50,000 CIFAR-10 training pictures
    (the worker's runtime settings) and, up to ``--vectors``, one copy each (the
    vector plus noise at about 0.98 cosine), brought in with ``visionnet import`` (on
    Lite with the store worker stopped, as the README says), not embedded twice.
    """
    import subprocess
    import sys

    import requests

    from bench.client import Api, job_seconds
    from bench.stack import free_port, private_stack, stack_root, wait_until_quiet
    from visionnet.milvus_server import PORT_OFFSETS

    t0 = time.perf_counter()
    real = train_vectors(args.train, args.cache)
    vectors = with_copies(real, args.vectors)
    workdir = Path(tempfile.mkdtemp(prefix="dups-bench-"))
    export = workdir / "dups.parquet"
    write_export(export, vectors, "builtin:demo-cifar10")
    console.print(f"{len(vectors)} vectors ready in {time.perf_counter() - t0:.1f} s")
    env_extra = {
        "VISIONNET_MILVUS__ENGINE": args.engine,
        "VISIONNET_WEB__PORT": str(free_port()),
        "VISIONNET_MILVUS__EMBEDDED_PORT": str(free_port(len(PORT_OFFSETS))),
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("VISIONNET_")}
    env.update(env_extra, VISIONNET_DATA_DIR=str(workdir / "data"))
    env["VISIONNET_ALLOWED_ROOTS"] = f'["{args.train.resolve()}"]'
    bin_dir = Path(sys.executable).parent
    ctl = [str(bin_dir / "supervisorctl"), "-c", str(workdir / "data" / "run" / "supervisord.conf")]
    runs: list[dict[str, Any]] = []
    with private_stack(workdir, [args.train], extra_env=env_extra) as base:
        if args.engine == "lite":
            subprocess.run([*ctl, "stop", "store"], env=env, check=True, capture_output=True)
        t1 = time.perf_counter()
        subprocess.run(
            [str(bin_dir / "visionnet"), "import", str(export), "--collection", "dups"],
            env=env,
            check=True,
        )
        import_s = time.perf_counter() - t1
        if args.engine == "lite":
            subprocess.run([*ctl, "start", "store"], env=env, check=True, capture_output=True)
        quiet_s = wait_until_quiet(stack_root(workdir))
        console.print(f"imported in {import_s:.1f} s; stack quiet after {quiet_s:.0f} s")
        api = Api(base)
        body: dict[str, Any] = {"collection": "dups"}
        if args.threshold is not None:
            body["threshold"] = args.threshold
        for n in range(args.repeats):
            t2 = time.perf_counter()
            job_id = api.submit("duplicates", json=body)
            job = api.wait(job_id, timeout=900)
            wall = time.perf_counter() - t2
            page = requests.get(
                f"{base}/api/v1/jobs/{job_id}/groups", params={"per_page": 1}, timeout=30
            ).json()
            res = job["result"]
            runs.append(
                {
                    "job_id": job_id,
                    "client_s": round(wall, 2),
                    "job_s": round(job_seconds(job), 2),
                    "worker_s": res.get("seconds"),
                    "images": res.get("images"),
                    "groups": res.get("groups"),
                    "images_in_groups": res.get("images_in_groups"),
                    "threshold": res.get("threshold"),
                    "k": res.get("k"),
                    "largest_group": page["groups"][0]["size"] if page.get("groups") else 0,
                }
            )
            console.print(f"run {n + 1}: {runs[-1]}")
    out = {
        "vectors": len(vectors),
        "real_vectors": len(real),
        "import_s": round(import_s, 1),
        "runs": runs,
        "client_s": spread([r["client_s"] for r in runs]),
        "job_s": spread([r["job_s"] for r in runs]),
    }
    table = Table(title=f"duplicates job over {len(vectors):,} vectors, {args.engine}")
    for col in ("run", "job s", "client s", "images", "groups", "in groups", "largest"):
        table.add_column(col)
    for n, r in enumerate(runs, 1):
        table.add_row(
            str(n),
            f"{r['job_s']:.1f}",
            f"{r['client_s']:.1f}",
            str(r["images"]),
            str(r["groups"]),
            str(r["images_in_groups"]),
            str(r["largest_group"]),
        )
    console.print(table)
    return {args.engine: out}


if __name__ == "__main__":
    main()
