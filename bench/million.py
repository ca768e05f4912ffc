"""Top-10 search at 1,000,000 vectors on the real Milvus server: latency and recall@10.

``python -m bench.million --real /tmp/cifar --queries ../shared/datasets/imagenet-sample-100``
(writes ``bench/results/million.json``). The real Milvus 2.3.5 standalone server
is started by the project's own launcher (``visionnet milvus-server``, loopback
only) in a temp dir. The collection is made by the project's ``VectorStore``
(the same schema and AUTOINDEX the workers use) and filled with:

- the demo model's embeddings of every picture under ``--real`` (the 60,000
  CIFAR-10 JPEGs here; flip averaging off, which halves the embedding time and
  changes nothing about the search), and
- perturbed copies of them up to ``--vectors`` in all (each a real embedding
  plus Gaussian noise, renormalised, at about 0.9 cosine to it): there are not a
  million real pictures on this machine. Clustered copies make the neighbours
  harder to tell apart than real pictures would, so recall here errs low.

Queries are the embeddings of pictures that are not in the collection (the 100
ImageNet photos), as a search by upload would send. Recall@10 is against exact
cosine search over all the vectors (numpy). Each query is timed three times; the
table gives p50 / p95 over all of them. The index is waited for first.

``--segment-max-mb 512,2048`` builds one server per value (the
``milvus.server_segment_max_mb`` setting) and ``--ef 64,128`` tries each HNSW
ef: every server is built first, then the searches of all pairs are
interleaved query by query, so the figures are side by side.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from rich.console import Console
from rich.table import Table

from bench.images import images_under
from bench.report import percentile, write_report
from bench.stack import free_port, stop_group
from visionnet.milvus_server import PORT_OFFSETS

COLLECTION = "million"
INSERT_BATCH = 2000


def embed_all(paths: list[Path], batch: int = 64) -> np.ndarray:
    """The demo model's vectors (flip averaging off) for ``paths``, in order."""
    from visionnet.workers.models.embedder import Embedder
    from visionnet.workers.models.loading import resolve_device
    from visionnet.workers.models.runtime import Runtime

    embedder = Embedder(
        "builtin:demo-cifar10", resolve_device("auto"), runtime=Runtime(flip_invariant="off")
    )
    out = []
    for start in range(0, len(paths), batch):
        images = []
        for path in paths[start : start + batch]:
            with Image.open(path) as img:
                images.append(img.convert("RGB"))
        out.append(embedder.embed(images))
    return np.concatenate(out)


def perturbed(real: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """``count`` unit vectors, each a real one plus noise (about 0.9 cosine to it)."""
    rng = np.random.default_rng(seed)
    dim = real.shape[1]
    sigma = 0.48 / np.sqrt(dim)  # |noise| about 0.48: cosine about 1 / sqrt(1 + 0.23)
    out = np.empty((count, dim), dtype=np.float32)
    for start in range(0, count, 100_000):
        n = min(100_000, count - start)
        base = real[rng.integers(0, len(real), n)]
        block = base + rng.normal(0, sigma, (n, dim)).astype(np.float32)
        out[start : start + n] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def start_server(workdir: Path, port: int, segment_max_mb: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VISIONNET_")}
    env |= {
        "VISIONNET_DATA_DIR": str(workdir / "data"),
        "VISIONNET_MILVUS__ENGINE": "server",
        "VISIONNET_MILVUS__EMBEDDED_PORT": str(port),
        "VISIONNET_MILVUS__SERVER_SEGMENT_MAX_MB": str(segment_max_mb),
    }
    visionnet = str(Path(sys.executable).with_name("visionnet"))
    workdir.mkdir(parents=True, exist_ok=True)
    log = (workdir / "milvus.log").open("ab")
    return subprocess.Popen(
        [visionnet, "milvus-server"], env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip


def wait_ready(uri: str, timeout: float = 300) -> Any:
    from pymilvus import MilvusClient

    deadline = time.monotonic() + timeout
    while True:
        try:
            client = MilvusClient(uri=uri, timeout=10)
            client.list_collections()
            return client
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(2)


def wait_indexed(client: Any, total: int, console: Console, timeout: float = 1800) -> float:
    """Seconds until the vector index covers every row (segments sealed and indexed)."""
    start = time.monotonic()
    client.flush(COLLECTION)
    while time.monotonic() - start < timeout:
        info = client.describe_index(COLLECTION, "vector")
        # (2.3.5 leaves pending_index_rows high once the index has finished: not read.)
        if int(info.get("indexed_rows", 0)) >= total and info.get("state") == "Finished":
            return time.monotonic() - start
        console.print(f"  indexed {info.get('indexed_rows')} of {total} rows")
        time.sleep(15)
    raise TimeoutError("the index did not cover every row")


def fill(client: Any, uri: str, vectors: np.ndarray) -> float:
    """Insert every vector as the workers would store it; seconds taken."""
    from visionnet.workers.vectorstore.milvus_store import VectorStore

    VectorStore(uri).ensure_collection(COLLECTION, vectors.shape[1], "builtin:demo-cifar10")
    start = time.perf_counter()
    for b in range(0, len(vectors), INSERT_BATCH):
        rows = [
            {
                "id": f"{i:064d}",
                "vector": vectors[i].tolist(),
                "path": f"/v/{i}",
                "size": 0,
                "model": "builtin:demo-cifar10",
                "indexed_at": 0,
                "width": 32,
                "height": 32,
                "label": "",
                "label_score": 0.0,
            }
            for i in range(b, min(b + INSERT_BATCH, len(vectors)))
        ]
        client.insert(COLLECTION, rows)
    return time.perf_counter() - start


def sealed_segments(uri: str) -> list[int]:
    """Rows of each sealed segment the query node searches (each has an index of its own)."""
    from pymilvus import connections, utility

    alias = f"segments-{uri}"
    connections.connect(alias, uri=uri)
    try:
        infos = utility.get_query_segment_info(COLLECTION, using=alias)
        return sorted((int(i.num_rows) for i in infos), reverse=True)
    finally:
        connections.disconnect(alias)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--real", type=Path, required=True, help="Pictures whose vectors go in.")
    parser.add_argument("--queries", type=Path, required=True, help="Pictures to search with.")
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--ef", default="128", help="HNSW ef values, comma separated.")
    parser.add_argument(
        "--segment-max-mb",
        default="512",
        help="milvus.server_segment_max_mb values, comma separated: one server each.",
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/million.json"))
    args = parser.parse_args(argv)
    efs = [int(v) for v in args.ef.split(",")]
    sizes = [int(v) for v in args.segment_max_mb.split(",")]
    console = Console()

    started = time.perf_counter()
    real_paths = images_under(args.real)[: args.vectors]
    real = embed_all(real_paths)
    queries = embed_all(images_under(args.queries))
    embed_s = time.perf_counter() - started
    vectors = np.concatenate([real, perturbed(real, args.vectors - len(real))])
    console.print(f"{len(real)} real and {len(vectors) - len(real)} perturbed vectors; "
                  f"embedding took {embed_s:.0f} s")  # fmt: skip
    exact = [{f"{i:064d}" for i in np.argsort(-(vectors @ q))[:10]} for q in queries]

    builds: dict[int, dict[str, Any]] = {}
    uris: dict[int, str] = {}
    servers: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="visionnet-million-") as tmp_name:
        try:
            clients: dict[int, Any] = {}
            for size in sizes:
                port = free_port(len(PORT_OFFSETS))
                servers.append(start_server(Path(tmp_name) / f"seg{size}", port, size))
                uri = uris[size] = f"http://127.0.0.1:{port}"
                client = clients[size] = wait_ready(uri)
                console.print(f"segments of at most {size} MB: inserting")
                insert_s = fill(client, uri, vectors)
                console.print(f"inserted in {insert_s:.0f} s; waiting for the index")
                index_s = wait_indexed(client, len(vectors), console)
                client.load_collection(COLLECTION)
                builds[size] = {"insert_s": insert_s, "index_wait_s": index_s}
            # Every server is built and loaded before any timing: the searches of
            # all (segment size, ef) pairs are interleaved, query by query.
            pairs = [(size, ef) for size in sizes for ef in efs]
            for size, ef in pairs:  # warm
                params = {"metric_type": "COSINE", "params": {"ef": ef}}
                for q in queries[:5]:
                    clients[size].search(COLLECTION, [q.tolist()], limit=10, search_params=params)
            latencies: dict[tuple[int, int], list[float]] = {p: [] for p in pairs}
            hits: dict[tuple[int, int], list[float]] = {p: [] for p in pairs}
            rng = np.random.default_rng(0)
            for _round in range(3):
                for qi, q in enumerate(queries):
                    for pi in rng.permutation(len(pairs)):
                        size, ef = pairs[pi]
                        t = time.perf_counter()
                        (found,) = clients[size].search(
                            COLLECTION,
                            data=[q.tolist()],
                            limit=10,
                            output_fields=["path", "width", "height", "label"],
                            search_params={"metric_type": "COSINE", "params": {"ef": ef}},
                            consistency_level="Eventually",  # no writes since: nothing to wait for
                        )
                        latencies[(size, ef)].append(time.perf_counter() - t)
                        if _round == 0:
                            hits[(size, ef)].append(len(exact[qi] & {h["id"] for h in found}) / 10)
            for size in sizes:  # after the searches: loading and handing off are over
                builds[size]["segment_rows"] = sealed_segments(uris[size])
        finally:
            for server in servers:
                stop_group(server, signal.SIGTERM, timeout=120)

    runs = [
        {
            "segment_max_mb": size,
            "ef": ef,
            **builds[size],
            "search_ms": {
                "p50": float(np.median(latencies[(size, ef)]) * 1e3),
                "p95": percentile(latencies[(size, ef)], 0.95) * 1e3,
                "min": min(latencies[(size, ef)]) * 1e3,
            },
            "recall_at_10": float(np.mean(hits[(size, ef)])),
        }
        for size, ef in pairs
    ]
    report: dict[str, Any] = {
        "command": "python -m bench.million " + " ".join(sys.argv[1:] if argv is None else argv),
        "vectors": len(vectors),
        "real_vectors": len(real),
        "dim": int(vectors.shape[1]),
        "queries": len(queries),
        "searches_each": 3 * len(queries),
        "runs": runs,
    }
    table = Table(title=f"top-10 search, real Milvus 2.3.5 server, {len(vectors):,} vectors")
    for col in ("segment MB", "segments", "insert s", "index s", "ef",
                "p50 ms", "p95 ms", "min ms", "recall@10"):  # fmt: skip
        table.add_column(col, justify="right")
    for r in runs:
        s = r["search_ms"]
        table.add_row(
            str(r["segment_max_mb"]), str(len(r["segment_rows"])),
            f"{r['insert_s']:.0f}", f"{r['index_wait_s']:.0f}", str(r["ef"]),
            f"{s['p50']:.1f}", f"{s['p95']:.1f}", f"{s['min']:.1f}", f"{r['recall_at_10']:.3f}",
        )  # fmt: skip
    console.print(table)
    write_report(args.out, report, console)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
