"""Load a model worker's models, and run one pass, as the worker starts: not in the first job.

Runs in a background thread of the process where tasks run (the prefork pool
child, or the threads-pool worker itself), so Celery's 4 s process-start limit
does not apply and the worker takes messages at once; a task that comes
before the load is done waits on the registry's lock instead of loading twice.
Which models: the launcher says, in ``VISIONNET_WORKER_WARMUP`` (the embedder
for bulk work, the classifier too for interactive work; nothing for the store
writer).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from celery.signals import worker_process_init, worker_ready

from visionnet.config.settings import get_settings

log = logging.getLogger(__name__)
ENV = "VISIONNET_WORKER_WARMUP"


def models_to_warm() -> list[str]:
    names = [n.strip() for n in os.environ.get(ENV, "").split(",") if n.strip()]
    return names if get_settings().models.warmup else []


def warm(names: list[str]) -> None:
    from visionnet.workers.base import process_context
    from visionnet.workers.model_worker.context import ModelContext
    from visionnet.workers.models.agreement import summary

    ctx = process_context(ModelContext)
    for name in names:
        start = time.perf_counter()
        try:
            model = ctx.classifier() if name == "classifier" else ctx.embedder()
            model.warm_up()
        except Exception:  # a model that cannot load fails its jobs, with the reason
            log.exception("warm-up of the %s failed", name)
            continue
        log.info(
            "warmed up the %s in %.2fs (%d CPU threads per pass) on %s: %s; %s",
            name,
            time.perf_counter() - start,
            _cpu_threads(),
            model.choice.label,
            model.choice.reason,
            summary(model.agreement),
        )


def _cpu_threads() -> int:
    import torch

    return int(torch.get_num_threads())


def start_warm_up() -> threading.Thread | None:
    names = models_to_warm()
    if not names:
        return None
    thread = threading.Thread(target=warm, args=(names,), name="warm-up", daemon=True)
    thread.start()
    return thread


@worker_process_init.connect
def _in_pool_process(**_: Any) -> None:
    start_warm_up()


@worker_ready.connect
def _in_threads_worker(sender: Any = None, **_: Any) -> None:
    # A prefork parent must not load models (its children would not share them,
    # and CUDA must not be initialised before a fork): only a threads-pool worker.
    pool = getattr(sender, "pool", None)
    if pool is not None and "thread" in type(pool).__module__:
        start_warm_up()
