"""A large index job on the embedded stack: images/s, stages, peak memory, then search latency (P5).

The script makes ``--files`` distinct small JPEGs (32x32, CIFAR-sized;
synthetic, so that any count can be made), starts a private stack
(``visionnet up --no-flower``, demo model) and indexes them in one job while
it samples, every half second, the RSS of every supervised program (a worker
counted with its pool processes) and Redis' own memory. Then P5: searches by
image id (no forward pass: all of their latency is overhead beyond the model),
one after another, timed from submission to success, first with the stack
idle at ``--files`` vectors, then while a second index job of ``--busy-files``
runs. The search result's own stage seconds give the Milvus call alone.

    .venv/bin/python -m bench.large_job --files 100000 --busy-files 20000
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from PIL import Image
from rich.console import Console
from rich.table import Table

from bench.client import FINAL, Api, job_seconds
from bench.images import images_under
from bench.report import percentile, write_report
from bench.stack import free_port, private_stack, stack_root, wait_until_quiet
from visionnet.core.redis_conn import connect
from visionnet.milvus_server import PORT_OFFSETS

PROGRAMS = {
    "redis-server": "redis",
    "milvus-lite": "milvus",
    "visionnet milvus-server": "milvus",
    "worker models": "models",
    "worker store": "store",
    "worker interactive": "interactive",
    "visionnet web": "web",
}


def make_images(folder: Path, count: int, seed: int) -> list[Path]:
    """``count`` distinct 32x32 JPEGs: smooth colour fields plus noise, 1,000 per folder."""
    rng = np.random.default_rng(seed)
    paths = []
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32) / 31
    for n in range(count):
        a, b, c = rng.uniform(0, 255, (3, 3))
        field = a[:, None, None] * xx + b[:, None, None] * yy + c[:, None, None] * (1 - xx)
        noise = rng.normal(0, 18, (3, 32, 32))
        pixels = np.clip(field / 2 + noise, 0, 255).astype(np.uint8).transpose(1, 2, 0)
        sub = folder / f"{n // 1000:04d}"
        if n % 1000 == 0:
            sub.mkdir(parents=True, exist_ok=True)
        path = sub / f"{n:07d}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(path)
    return paths


class MemorySampler(threading.Thread):
    """Peak RSS per supervised program (with its children) and Redis' peak used memory."""

    def __init__(self, stack_dir: Path) -> None:
        super().__init__(daemon=True)
        self.stack_dir = stack_dir
        self.peak_rss: dict[str, int] = {}
        self.redis_peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        redis = connect(f"redis+socket://{self.stack_dir / 'data' / 'redis' / 'redis.sock'}")
        while not self.stop.wait(0.5):
            for name, proc in self._programs():
                try:
                    rss = proc.memory_info().rss + sum(
                        c.memory_info().rss for c in proc.children(recursive=True)
                    )
                except psutil.Error:
                    continue
                self.peak_rss[name] = max(self.peak_rss.get(name, 0), rss)
            with contextlib.suppress(Exception):  # Redis restarting: skip one sample
                self.redis_peak = max(self.redis_peak, int(redis.info("memory")["used_memory"]))

    def _programs(self) -> list[tuple[str, psutil.Process]]:
        """supervisord of this stack and each program it runs (pool children count with it)."""
        root = stack_root(self.stack_dir)
        if root is None:
            return []
        out = [("whole stack", root)]
        for child in root.children():
            try:
                child_cmd = " ".join(child.cmdline())
            except psutil.Error:
                continue
            name = next((n for k, n in PROGRAMS.items() if k in child_cmd), None)
            if name:
                out.append((name, child))
        return out


def search_latencies(
    api: Api, ids: list[str], collection: str, recorded: list[float] | None = None
) -> tuple[list[float], list[float]]:
    """Submit-to-success seconds of each search by id as the client sees it, and the
    Milvus call's own seconds; ``recorded`` gets the job record's own created-to-finished
    seconds (the server's clock, without the client's HTTP and polling)."""
    total, milvus = [], []
    for image_id in ids:
        start = time.perf_counter()
        body = {"image_id": image_id, "k": 10, "collection": collection}
        job_id = api.submit("search", json=body)
        while True:  # poll every 2 ms: the client's own polling must not be what is measured
            job = api.session.get(f"{api.base}/api/v1/jobs/{job_id}", timeout=30).json()
            if job["state"] in FINAL:
                break
            time.sleep(0.002)
        total.append(time.perf_counter() - start)
        if job["state"] != "succeeded":
            raise RuntimeError(f"search {job_id} {job['state']}: {job['error']}")
        milvus.append(float(job["result"]["stage_seconds"]["search"]))
        if recorded is not None:
            recorded.append(job_seconds(job))
    return total, milvus


def recall_at_10(uri: str, collection: str, query_ids: list[str], ef: int) -> dict[str, Any]:
    """Milvus' top-10 against exact cosine search over every stored vector, and its latency."""
    from pymilvus import MilvusClient

    client = MilvusClient(uri=uri, timeout=600)
    client.load_collection(collection)
    ids: list[str] = []
    vectors: list[list[float]] = []
    it = client.query_iterator(collection, batch_size=8192, output_fields=["id", "vector"])
    while rows := it.next():
        ids += [r["id"] for r in rows]
        vectors += [r["vector"] for r in rows]
    it.close()
    matrix = np.asarray(vectors, dtype=np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    row_of = {v: i for i, v in enumerate(ids)}
    hits, latencies = [], []
    for qid in query_ids:
        q = matrix[row_of[qid]]
        exact = {ids[i] for i in np.argsort(-(matrix @ q))[:10]}
        start = time.perf_counter()
        found = client.search(
            collection,
            data=[q.tolist()],
            limit=10,
            search_params={"metric_type": "COSINE", "params": {"ef": ef}},
        )[0]
        latencies.append(time.perf_counter() - start)
        hits.append(len(exact & {h["id"] for h in found}) / 10)
    return {
        "vectors": len(ids),
        "queries": len(query_ids),
        "ef": ef,
        "recall_at_10": float(np.mean(hits)),
        "search_call": summary(latencies),
    }


def read_costs(
    uri: str, collection: str, query_ids: list[str], write_ts: int | None
) -> dict[str, Any]:
    """A search by id's two reads (get the vector, search), by consistency, side by side.

    "Strong" waits for the server's newest time; "Session" is what the workers do
    by default: wait for the newest recorded write (``write_ts``, from Redis).
    Each query is read at both levels in turn, so both see the same machine.
    """
    from pymilvus import MilvusClient

    client = MilvusClient(uri=uri, timeout=600)
    client.load_collection(collection)
    levels: dict[str, dict[str, Any]] = {"Strong": {"consistency_level": "Strong"}}
    if write_ts:
        levels["Session"] = {"consistency_level": "Customized", "guarantee_timestamp": write_ts}
    seconds: dict[str, list[float]] = {level: [] for level in levels}
    params = {"metric_type": "COSINE", "params": {"ef": 128}}
    for _round in range(3):
        for qid in query_ids:
            for level, kw in levels.items():
                start = time.perf_counter()
                (row,) = client.get(collection, ids=[qid], output_fields=["vector"], **kw)
                client.search(
                    collection,
                    data=[row["vector"]],
                    limit=10,
                    output_fields=["path", "width", "height", "label"],
                    search_params=params,
                    **kw,
                )
                seconds[level].append(time.perf_counter() - start)
    return {level: summary(values) for level, values in seconds.items()}


def newest_write_ts(stack_dir: Path, collection: str) -> int | None:
    """The write clock's entry for ``collection`` in the stack's Redis."""
    from visionnet.workers.vectorstore.write_clock import WriteClock

    redis = connect(f"redis+socket://{stack_dir / 'data' / 'redis' / 'redis.sock'}")
    return WriteClock(redis).last(collection)


def summary(values: list[float]) -> dict[str, float]:
    return {"p50_ms": statistics.median(values) * 1e3, "p95_ms": percentile(values, 0.95) * 1e3}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--busy-files", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--workdir", type=Path, help="Keep images and stack here.")
    parser.add_argument(
        "--real", type=Path, help="A folder of real photos, indexed too; recall queries from it."
    )
    parser.add_argument("--engine", choices=["lite", "server"], default="lite")
    parser.add_argument(
        "--flip-invariant",
        choices=["auto", "on", "off"],
        default="auto",
        help="models.flip_invariant: off halves the demo model's cost when only search matters.",
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/large_job.json"))
    args = parser.parse_args(argv)
    console = Console()
    with tempfile.TemporaryDirectory(prefix="visionnet-large-") as tmp_name:
        tmp = args.workdir or Path(tmp_name)
        start = time.perf_counter()
        main_dir, busy_dir = tmp / "images", tmp / "busy"
        real = images_under(args.real) if args.real else []
        if real:  # the real photos, linked into the job's folder
            (main_dir / "real").mkdir(parents=True, exist_ok=True)
            for n, photo in enumerate(real[: args.files]):
                (main_dir / "real" / f"{n:06d}{photo.suffix}").symlink_to(photo.resolve())
        paths = real[: args.files] + make_images(main_dir, args.files - len(real), seed=1)
        make_images(busy_dir, args.busy_files, seed=2)
        made = args.files - len(real) + args.busy_files
        console.print(f"made {made} JPEGs in {time.perf_counter() - start:.0f} s")
        rng = np.random.default_rng(0)
        pool = len(real) if real else len(paths)
        picks = rng.choice(min(pool, len(paths)), size=args.queries, replace=False)
        ids = [hashlib.sha256(paths[i].read_bytes()).hexdigest() for i in picks]
        stack_dir = tmp / "stack"
        port = free_port(len(PORT_OFFSETS))
        env = {"VISIONNET_MILVUS__EMBEDDED_PORT": str(port)}
        if args.engine == "server":
            env |= {"VISIONNET_MILVUS__ENGINE": "server", "VISIONNET_MILVUS__DIRECT_WRITES": "true"}
        env["VISIONNET_MODELS__FLIP_INVARIANT"] = args.flip_invariant
        roots = [main_dir, busy_dir, *([args.real] if args.real else [])]
        with private_stack(stack_dir, roots, extra_env=env) as base:
            api = Api(base)
            sampler = MemorySampler(stack_dir)
            sampler.start()
            body = {"source": {"path": str(main_dir)}, "collection": "large"}
            job = api.wait(api.submit("index", json=body), timeout=4 * 3600)
            sampler.stop.set()
            sampler.join()
            seconds = job_seconds(job)
            settled_s = wait_until_quiet(stack_root(stack_dir))
            console.print(f"the stack settled {settled_s:.0f} s after the job")
            search_latencies(api, ids[:5], "large")  # warm
            idle_recorded: list[float] = []
            idle, idle_milvus = search_latencies(api, ids, "large", idle_recorded)
            uri = f"http://127.0.0.1:{port}"
            recall = recall_at_10(uri, "large", ids, ef=128)
            reads = read_costs(uri, "large", ids, newest_write_ts(stack_dir, "large"))
            body = {"source": {"path": str(busy_dir)}, "collection": "busy"}
            busy_id = api.submit("index", json=body)
            time.sleep(3)  # planned, chunks queued, the model worker mid-chunk
            busy, busy_milvus = search_latencies(api, ids, "large")
            still_running = api.session.get(f"{base}/api/v1/jobs/{busy_id}").json()["state"]
            api.wait(busy_id, timeout=3600)
    result = job["result"]
    report: dict[str, Any] = {
        "command": "python -m bench.large_job " + " ".join(sys.argv[1:] if argv is None else argv),
        "files": args.files,
        "real_photos": len(real),
        "engine": args.engine,
        "recall": recall,
        "index_job": {
            "seconds": seconds,
            "images_per_s": args.files / seconds,
            "indexed": result["indexed"],
            "failed": result["failed"],
            "stage_seconds": result["stage_seconds"],
        },
        "peak_rss_mb": {k: v / 2**20 for k, v in sorted(sampler.peak_rss.items())},
        "redis_peak_used_memory_mb": sampler.redis_peak / 2**20,
        "p5_search_by_id": {
            "vectors": result["indexed"],
            "settled_after_job_s": settled_s,
            "idle_total": summary(idle),
            "idle_job_record": summary(idle_recorded),
            "idle_milvus_call": summary(idle_milvus),
            "reads_by_consistency": reads,
            "during_index_job_total": summary(busy),
            "during_index_job_milvus_call": summary(busy_milvus),
            "index_job_state_after_the_searches": still_running,
        },
    }
    table = Table(
        title=f"{args.files:,}-file index job ({args.engine}), then P5 (search by id, k 10)"
    )
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("index job images/s", f"{report['index_job']['images_per_s']:.0f}")
    table.add_row("index job seconds", f"{seconds:.0f}")
    for stage, value in result["stage_seconds"].items():
        table.add_row(f"  stage {stage} (worker s)", f"{value:.1f}")
    for name, mb in report["peak_rss_mb"].items():
        table.add_row(f"peak RSS {name}", f"{mb:.0f} MB")
    table.add_row("Redis peak used memory", f"{report['redis_peak_used_memory_mb']:.0f} MB")
    p5 = report["p5_search_by_id"]
    for key in ("idle_total", "idle_job_record", "idle_milvus_call", "during_index_job_total"):
        p50, p95 = p5[key]["p50_ms"], p5[key]["p95_ms"]
        table.add_row(f"P5 {key} p50 / p95", f"{p50:.1f} / {p95:.1f} ms")
    for level, costs in reads.items():
        p50, p95 = costs["p50_ms"], costs["p95_ms"]
        table.add_row(f"get + search, {level} p50 / p95", f"{p50:.1f} / {p95:.1f} ms")
    table.add_row("second job state after the searches", str(still_running))
    table.add_row("recall@10 vs exact (ef 128)", f"{recall['recall_at_10']:.3f}")
    p50, p95 = recall["search_call"]["p50_ms"], recall["search_call"]["p95_ms"]
    table.add_row("top-10 search call p50 / p95", f"{p50:.1f} / {p95:.1f} ms")
    console.print(table)
    write_report(args.out, report, console)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
