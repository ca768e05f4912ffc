"""What every model class of the model worker has in common, so one registry loads them all."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from visionnet.workers.models.agreement import (
    AUTO_PROBE_RECALL,
    Agreement,
    measure_change,
    summary,
)
from visionnet.workers.models.batch_preprocess import BatchPreprocessor
from visionnet.workers.models.info import ModelInfo, public_name
from visionnet.workers.models.loading import resolved_ref
from visionnet.workers.models.runtime import Runtime, lower_precision, torch_dtype

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")


def _nothing() -> None:
    """Nothing to undo: the precision was never lowered."""


def is_out_of_memory(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def mirror_mean(outputs: Any) -> Any:
    """The mean of each image's output and its mirror's (the batch's two halves)."""
    half = outputs.shape[0] // 2
    return (outputs[:half] + outputs[half:]) / 2


class Prepared(list[Any]):
    """Images with the batch a model's ``pixel_values`` made of them, ahead of time.

    An index job's reader threads preprocess batch n+1 (the processor's resize
    and normalisation, the mirror copies) while the model runs batch n, so the
    thread that drives the model only runs it. A ``Prepared`` is a list of its
    images: a model that did not make it, or a slice of it (a batch split after
    running out of memory), preprocesses the images as usual.
    """

    def __init__(self, images: Sequence[Any], inputs: dict[str, Any], owner: ImageModel) -> None:
        super().__init__(images)
        self.inputs = inputs
        self.owner = owner


class ImageModel:
    """A model built from (ref, device); ``ref`` is a hub id, a directory or a ``builtin:`` name.

    Subclasses load in ``__init__`` (slow, once per process through the
    registry) and set ``info``. ``ref`` is where the files came from (stays in
    the worker); ``name`` is what results, collections and users see.
    """

    kind: ClassVar[str]
    ref: str
    name: str
    info: ModelInfo

    def __init__(
        self, ref: str, device: str, *, offline: bool = False, runtime: Runtime | None = None
    ) -> None:
        from visionnet.workers.models.cifarnet import register_auto_classes

        register_auto_classes()  # the demo model's class, for the Auto loaders
        self.ref = resolved_ref(ref)
        self.name = public_name(ref)
        self.device = device
        self.offline = offline
        self.runtime = runtime or Runtime()
        # models.runtime and models.precision resolved for this device, with the reason.
        self.choice = self.runtime.choice(device)
        # The weights load in fp32, the reference the chosen setting is measured
        # against (agreement.py): torch bf16/fp16 is cast after that, in ``_ready``;
        # onnxruntime's graphs are exported from them.
        import torch

        self.dtype: Any = torch.float32
        # The matmuls' lower precision (bf16/fp16) run under autocast, None for fp32.
        self.autocast_dtype: Any = None
        # The chosen setting's outputs against fp32's (None for torch fp32 itself).
        self.agreement: Agreement | None = None
        # The model's forward (compiled or not) and the memory format of its inputs.
        self.forward: Any = None
        self.memory_format: Any = None
        # Largest batch known to fit; lowered when a forward pass runs out of memory.
        self.max_batch: int | None = None
        # Average outputs over each image and its mirror (decided in ``_ready``).
        self.flip_invariant = False
        self.batch_preprocess: BatchPreprocessor | None = None

    processor: Any
    model: Any

    def _ready(self, config: Any) -> None:
        """Move the loaded ``model`` to its device, in eval mode, as the runtime says.

        ``config`` is the checkpoint's own (a CLIP vision tower's is only part of it).
        """
        self.forward, self.memory_format = self.runtime.prepare(self.model, self.device)
        self.flip_invariant = self.runtime.flips(config)
        # Resize, rescale and normalise as tensor ops over the batch, where the
        # processor's recipe is only that (batch_preprocess.py).
        self.batch_preprocess = BatchPreprocessor.for_processor(self.processor)
        self._lower_precision()
        if self.choice.runtime == "onnxruntime":
            self._use_onnxruntime()

    def _lower_precision(self) -> None:
        """torch bf16/fp16: measure against the fp32 weights just loaded, then lower the
        matmuls to it (runtime.lower_precision; the rest stays fp32, under autocast).

        A precision that "auto" picked must keep recall@10 against fp32 at
        ``AUTO_PROBE_RECALL`` on the probes, or the model goes back to its fp32
        weights (kept for that) and ``choice`` says why: auto never trades search
        results for speed unmeasured. An explicit setting is kept whatever it
        measures.
        """
        if self.choice.runtime != "torch" or self.choice.precision == "fp32":
            return
        from visionnet.workers.models import agreement_cache

        target, fp32 = torch_dtype(self.choice), self.dtype
        restore: Callable[[], None] = _nothing
        kept_at = self._agreement_key()
        # Measured at an earlier load of these tensors, where such measures are kept.
        agreement = agreement_cache.load(*kept_at) if kept_at else None
        if agreement is None:
            agreement, restore = self._measure_lowering(target)
            if kept_at:
                agreement_cache.save(*kept_at, agreement)
        elif not self._fails_gate(agreement):
            lower_precision(self.model, target)
            self.dtype = self.autocast_dtype = target
        if self._fails_gate(agreement):
            restore()
            self.dtype, self.autocast_dtype = fp32, None
            self.choice = self.choice.as_fp32(
                f"{self.choice.precision} kept recall@10 {agreement['recall_at_10']:.3f} "
                f"against fp32 on the probes, under {AUTO_PROBE_RECALL}"
            )
            log.info("%s: %s", self.name, self.choice.reason)
            return
        self.agreement = agreement
        log.info("%s on %s: %s", self.name, self.choice.label, summary(agreement))

    def _measure_lowering(self, target: Any) -> tuple[Agreement, Callable[[], None]]:
        """Lower to ``target`` between two passes over the probes; with what undoes it
        (a copy of the fp32 weights is kept while "auto" still has to confirm)."""
        forward, self.forward = self.forward, self.model  # measured uncompiled
        restore: list[Callable[[], None]] = []

        def cast() -> None:
            restore.append(lower_precision(self.model, target, keep=self.choice.confirm))
            self.dtype = self.autocast_dtype = target

        agreement = measure_change(self, cast)
        self.forward = forward
        return agreement, restore[0]

    def _fails_gate(self, agreement: Agreement) -> bool:
        return self.choice.confirm and agreement["recall_at_10"] < AUTO_PROBE_RECALL

    def _agreement_key(self) -> tuple[Path, str] | None:
        """Where this load's agreement is kept (agreement_cache.py), if anywhere."""
        if not self.runtime.agreement_cache:
            return None
        from visionnet.workers.models.agreement_cache import agreement_key

        return Path(self.runtime.agreement_cache), agreement_key(self, self.choice.label)

    def lower(self, module: Any) -> None:
        """Lower ``module``'s matmuls to the chosen torch precision (a text tower too)."""
        lower_precision(module, self.autocast_dtype)

    def precision_scope(self) -> contextlib.AbstractContextManager[Any]:
        """Where a forward pass runs: autocast to the lowered precision, or as it is."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        import torch

        return torch.autocast(self.device.split(":")[0], dtype=self.autocast_dtype)

    def _use_onnxruntime(self) -> None:
        """The pass on onnxruntime (onnx_forward.py), or torch with the reason in ``choice``."""
        from pathlib import Path

        from visionnet.workers.models import agreement_cache
        from visionnet.workers.models.onnx_cache import default_root
        from visionnet.workers.models.onnx_forward import use_onnxruntime

        root = Path(self.runtime.onnx_cache) if self.runtime.onnx_cache else default_root()
        kept_at = self._agreement_key()  # of the fp32 torch tensors, before the switch
        agreement = agreement_cache.load(*kept_at) if kept_at else None
        if agreement is None:
            agreement = measure_change(self, lambda: use_onnxruntime(self, root))
            if kept_at and self.choice.runtime == "onnxruntime":
                agreement_cache.save(*kept_at, agreement)
        else:
            use_onnxruntime(self, root)  # measured at an earlier load of these tensors
        if self.choice.runtime == "onnxruntime":  # else it fell back to torch fp32
            self.agreement = agreement
            log.info("%s on %s: %s", self.name, self.choice.label, summary(agreement))

    def pixel_values(self, images: Sequence[Any]) -> dict[str, Any]:
        """The processor's batch, on the device, in the model's dtype and memory format.

        With ``flip_invariant`` the batch holds the images and then their mirrors
        (flipped after preprocessing: the processors' resize and normalisation
        commute with a horizontal flip); ``mirror_mean`` folds the outputs back.
        """
        if isinstance(images, Prepared) and images.owner is self:
            return images.inputs
        inputs = self.preprocess(images)
        # fp32 in: autocast gives the matmuls their precision, the rest stays fp32.
        pixels = inputs["pixel_values"].float()
        if self.flip_invariant:
            import torch

            pixels = torch.cat([pixels, pixels.flip(-1)])
        if self.memory_format is not None:
            pixels = pixels.contiguous(memory_format=self.memory_format)
        inputs["pixel_values"] = pixels
        return dict(inputs)

    def preprocess(self, images: Sequence[Any]) -> dict[str, Any]:
        """The processor's inputs for ``images`` on the device: as tensor ops over the
        batch where its recipe allows (batch_preprocess.py), else the processor's own."""
        if self.batch_preprocess is not None:
            import torch

            return {"pixel_values": self.batch_preprocess(images, self.device, torch.float32)}
        return dict(self.processor(images=images, return_tensors="pt").to(self.device))

    def prepare(self, images: Sequence[Any]) -> Prepared:
        """``images`` with their preprocessed batch, for this model's next pass over them.

        Thread-safe (the processor keeps no state), so a reader thread can call it.
        """
        return Prepared(images, self.pixel_values(images), self)

    def prepare_ahead(self, images: Sequence[Any]) -> list[Any]:
        """``prepare(images)``, or the plain images when the device has no room for
        their batch yet: the pass then preprocesses them itself, splitting the batch
        as it does when it runs out of memory (an index job's readers run ahead)."""
        if not images:
            return list(images)
        try:
            return self.prepare(images)
        except (RuntimeError, MemoryError) as exc:
            if not is_out_of_memory(exc):
                raise
            return list(images)

    def warm_up(self) -> None:
        """One pass over a gray image, so the first job does not pay for lazy init."""
        from PIL import Image

        side = self.input_size or 224
        self._warm(Image.new("RGB", (side, side), (128, 128, 128)))

    def _warm(self, image: Any) -> None:
        raise NotImplementedError

    @property
    def input_size(self) -> int | None:
        """The side the processor resizes to: decoding need not produce more (JPEG draft)."""
        size = getattr(self.processor, "size", None)
        if size is None:
            return None

        def side(key: str) -> Any:
            # A plain dict in older processors, transformers' SizeDict (attributes) in newer.
            return size.get(key) if isinstance(size, dict) else getattr(size, key, None)

        sides = [int(v) for k in ("height", "width", "shortest_edge") if (v := side(k))]
        return max(sides) if sides else None

    def fitting(
        self,
        run: Callable[[Sequence[T]], R],
        items: Sequence[T],
        join: Callable[[list[R]], R],
    ) -> R:
        """``run(items)``, split into halves (recursively) while a pass runs out of memory.

        A large batch of large images can exhaust a GPU that a smaller one fits; the
        chunk then finishes in smaller passes with the same results, and later
        calls start from the size that fitted.
        """
        if self.max_batch is not None and len(items) > self.max_batch:
            step = self.max_batch
            return join(
                [self.fitting(run, items[i : i + step], join) for i in range(0, len(items), step)]
            )
        try:
            return run(items)
        except (RuntimeError, MemoryError) as exc:
            if not is_out_of_memory(exc) or len(items) <= 1:
                raise
        self._free_cached_memory()
        half = (len(items) + 1) // 2
        self.max_batch = half
        log.warning("%s: out of memory at batch %d; retrying in halves", self.name, len(items))
        return join([self.fitting(run, items[:half], join), self.fitting(run, items[half:], join)])

    def _free_cached_memory(self) -> None:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()
