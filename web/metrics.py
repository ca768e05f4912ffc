"""Prometheus ``/metrics`` of the service, made from Redis at scrape time.

Counters come from ``visionnet.core.metrics`` (kept by the job scripts in
Redis, so every web process answers the same); queue depths are the broker's
list lengths; workers are those whose liveness record has not expired (written
by the workers themselves: a scrape never broadcasts to them). Task-level
metrics (per task name, runtime) are Flower's own ``/metrics``.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from visionnet.core import metrics
from visionnet.core.liveness import consumers
from visionnet.core.queues import BULK_QUEUE, MODELS_QUEUE, STORE_QUEUE
from visionnet.web.services import Services

QUEUES = (MODELS_QUEUE, BULK_QUEUE, STORE_QUEUE)


class ServiceCollector:
    def __init__(self, svc: Services) -> None:
        self._svc = svc

    def collect(self) -> Iterator[Metric]:
        svc = self._svc
        counters = svc.jobs.counters()

        submitted = CounterMetricFamily(
            "visionnet_jobs_submitted", "Jobs submitted, by type.", labels=["type"]
        )
        finished = CounterMetricFamily(
            "visionnet_jobs_finished",
            "Jobs that ended, by type and final state (succeeded, failed, cancelled).",
            labels=["type", "state"],
        )
        images = CounterMetricFamily(
            "visionnet_images", "Images through index jobs, by outcome.", labels=["outcome"]
        )
        for name, value in sorted(counters.items()):
            kind, _, rest = name.partition(":")
            if kind == "submitted":
                submitted.add_metric([rest], value)
            elif kind == "finished":
                job_type, _, state = rest.rpartition(":")
                finished.add_metric([job_type, state], value)
            elif kind == "images":
                images.add_metric([rest], value)
        yield from (submitted, finished, images)
        yield self._stages(counters)

        depth = GaugeMetricFamily(
            "visionnet_queue_depth", "Messages waiting in each queue.", labels=["queue"]
        )
        for queue, length in svc.jobs.queue_depths(QUEUES).items():
            depth.add_metric([queue], float(length))
        yield depth

        workers = GaugeMetricFamily(
            "visionnet_workers",
            "Live workers consuming each queue (their liveness records).",
            labels=["queue"],
        )
        for queue, count in self._workers().items():
            workers.add_metric([queue], float(count))
        yield workers

    @staticmethod
    def _stages(counters: dict[str, float]) -> HistogramMetricFamily:
        family = HistogramMetricFamily(
            "visionnet_index_stage_seconds",
            "Seconds one index chunk spent per stage (read, hash, lookup, decode, "
            "preprocess, decode_wait, embed, handoff_wait, write, classify).",
            labels=["stage"],
        )
        stages = sorted(n.split(":", 1)[1] for n in counters if n.startswith("stage_count:"))
        for stage in stages:
            buckets = [
                (b, counters.get(f"stage_le:{stage}:{b}", 0.0)) for b in metrics.STAGE_BUCKETS
            ]
            buckets.append(("+Inf", counters[f"stage_count:{stage}"]))
            family.add_metric([stage], buckets, counters.get(f"stage_sum:{stage}", 0.0))
        return family

    def _workers(self) -> dict[str, int]:
        counts = dict.fromkeys(QUEUES, 0)
        for queue, names in consumers(self._svc.workers.alive()).items():
            counts[queue] = len(names)
        return counts


def render(svc: Services) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServiceCollector(svc))
    return generate_latest(registry)
