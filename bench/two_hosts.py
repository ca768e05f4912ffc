"""Two hosts: an index job on host A's model worker alone, then on A's and B's together.

The two hosts are the ones tests/test_two_hosts.py builds (tests/netns.py's helpers):
two network namespaces joined by a veth pair (10.231.7.1/30 and .2/30), host A
running ``visionnet up --roles redis,milvus,web,store,flower,models`` (Redis on TCP
at A's address with a password, the real Milvus server with a token), host B
``visionnet up --roles models``, reaching A by its address. Unlike the test, both run
the demo profile's model (builtin:demo-cifar10) with the production batch, chunk and
timeout settings, over real photos (the CIFAR-10 test split by default), unpacked
into one folder both hosts read at the same path.

Each round runs one job with both hosts' workers, stops B (its stack, in order) and
runs one job on A's worker alone; B is started again for the next round, so the two
layouts alternate and share the machine's noise. Each job writes a fresh collection,
so nothing is skipped as already stored.

Per host the job record gives the chunks each worker embedded (``workers``); a host's
files are its chunks times the chunk size (exact when the file count is a multiple of
it), and its img/s is those files over the job's wall time (server clock, creation to
end). The chunk reports' stage seconds are summed over the job, not per worker, so the
embed seconds are given per job (all hosts together), and per host only where one
host did the whole job.

Both "hosts" share this machine's cores: B adds a second worker, not cores. The
figure shows how a job splits between hosts and what a second host's worker, reaching
A over TCP with the password, adds on the same cores: not scaling. A's own worker uses
the same TCP/password path, so neither layout isolates that path's cost.

    .venv/bin/python -m bench.two_hosts --files 10000 --chunk 250   (as root)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

from bench.client import FINAL, job_seconds
from tests.netns import (
    ADDR_A,
    MILVUS_PORT,
    MILVUS_TOKEN,
    REDIS_PASSWORD,
    REDIS_PORT,
    WEB_PORT,
    InNetns,
    TwoHosts,
    delete_namespaces,
    make_namespaces,
    stop,
    up_in,
    wait_for_workers,
)

A, B = "models@vn-host-a", "models@vn-host-b"
ROLES_A, ROLES_B = "redis,milvus,web,store,flower,models", "models"


def unpack(source: Path, count: int, out: Path) -> int:
    """``count`` of the source's images (a fixed shuffle, all classes), copied under ``out``."""
    files = sorted(p for p in source.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    random.Random(0).shuffle(files)
    chosen = files[:count]
    for p in chosen:
        dest = out / p.relative_to(source)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, dest)
    return len(chosen)


def host_env(tmp: Path, root: Path, chunk: int, **extra: str) -> dict[str, str]:
    """A host's settings: the demo profile and production defaults, but for where it lives."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VISIONNET_")}
    env.update(
        VISIONNET_DATA_DIR=str(tmp / "data"),
        VISIONNET_PROFILE="demo",
        VISIONNET_ALLOWED_ROOTS=json.dumps([str(root)]),
        VISIONNET_MILVUS__TOKEN=MILVUS_TOKEN,
        VISIONNET_WEB__PORT=str(WEB_PORT),  # each namespace has ports of its own
        VISIONNET_FLOWER__PORT="5555",
        VISIONNET_MILVUS__EMBEDDED_PORT=str(MILVUS_PORT),
        VISIONNET_JOBS__CHUNK_SIZE=str(chunk),
        PYTHONUNBUFFERED="1",
        CUDA_VISIBLE_DEVICES="",  # the CPU, as the rest of RESULTS
    )
    env.update(extra)
    return env


def run_job(hosts: TwoHosts, collection: str) -> dict[str, Any]:
    body = {"source": {"path": str(hosts.root)}, "collection": collection}
    t0 = time.monotonic()
    r = hosts.in_a(requests.post, hosts.base + "/index", json=body, timeout=60)
    if r.status_code != 202:
        raise RuntimeError(f"POST /index: {r.status_code} {r.text}")
    job_id = r.json()["job_id"]
    while True:
        job: dict[str, Any] = hosts.get(f"/jobs/{job_id}").json()
        if job["state"] in FINAL:
            break
        time.sleep(0.2)
    job["client_s"] = time.monotonic() - t0
    if job["state"] != "succeeded":
        raise RuntimeError(f"job {job_id} {job['state']}: {job.get('error')}")
    return job


def measure(job: dict[str, Any], layout: str, files: int, chunk: int) -> dict[str, Any]:
    result = job["result"]
    if (result["indexed"], result["failed"], result["skipped"]) != (files, 0, 0):
        raise RuntimeError(f"job did not index every file once: {result}")
    wall = job_seconds(job)
    stages = result["stage_seconds"]
    per_host = {}
    for name in (A, B):
        chunks = result["workers"].get(name, 0)
        host_files = min(chunks * chunk, files)
        per_host[name] = {
            "chunks": chunks,
            "files": host_files,
            "img_s": host_files / wall,
            # Stage seconds are summed over the job, so per host only when one did it all.
            "embed_s": stages.get("embed") if chunks and host_files == files else None,
        }
    return {
        "layout": layout,
        "job_id": job["id"],
        "wall_s": wall,
        "client_s": job["client_s"],
        "img_s": files / wall,
        "stage_seconds": stages,
        "hosts": per_host,
    }


def start_b(hosts: TwoHosts, env_b: dict[str, str]) -> None:
    hosts.b = up_in(hosts.ns_b, "vn-host-b", env_b, ROLES_B, hosts.logs["b"])
    wait_for_workers(hosts, {A, B})


def stop_b(hosts: TwoHosts) -> None:
    """B's stack stopped in order, and gone from A's health (its record expired)."""
    stop(hosts.b)
    deadline = time.monotonic() + 60
    while B in {w["name"] for w in hosts.health()["workers"]}:
        if time.monotonic() > deadline:
            raise RuntimeError("host B still in health 60 s after its stack stopped")
        time.sleep(0.5)


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for layout in ("A alone", "A + B"):
        mine = [r for r in runs if r["layout"] == layout]
        if not mine:
            continue
        walls = [r["wall_s"] for r in mine]
        embeds = [r["stage_seconds"].get("embed", 0.0) for r in mine]
        entry: dict[str, Any] = {
            "wall_s": {"min": min(walls), "median": statistics.median(walls)},
            "img_s": {
                "min": min(r["img_s"] for r in mine),
                "median": statistics.median(r["img_s"] for r in mine),
            },
            "embed_s_all_hosts": {"min": min(embeds), "median": statistics.median(embeds)},
            "hosts": {},
        }
        for name in (A, B):
            files = [r["hosts"][name]["files"] for r in mine]
            rates = [r["hosts"][name]["img_s"] for r in mine]
            entry["hosts"][name] = {
                "files": files,
                "img_s": {"min": min(rates), "median": statistics.median(rates)},
            }
        out[layout] = entry
    return out


def print_table(summary: dict[str, Any], files: int, chunk: int, cores: int) -> None:
    print(
        f"\nTwo hosts, {files} CIFAR-10 test images, chunk {chunk}, demo model; "
        f"both hosts share this machine's {cores} CPU cores: B adds a worker, not cores, "
        "so the rows show how a job splits between hosts, not scaling (both layouts reach "
        "Redis over TCP with the password). Min / median of the rounds.\n"
    )
    head = (
        "| layout | host | files per round | img/s of its chunks | job img/s | "
        "job wall s | embed s (all hosts) |"
    )
    print(head)
    print("|" + " --- |" * 7)
    for layout, entry in summary.items():
        for name, h in entry["hosts"].items():
            if not any(h["files"]):
                continue
            print(
                f"| {layout} | {name} | {', '.join(map(str, h['files']))} | "
                f"{h['img_s']['min']:.0f} / {h['img_s']['median']:.0f} | "
                f"{entry['img_s']['min']:.0f} / {entry['img_s']['median']:.0f} | "
                f"{entry['wall_s']['min']:.1f} / {entry['wall_s']['median']:.1f} | "
                f"{entry['embed_s_all_hosts']['min']:.1f} / "
                f"{entry['embed_s_all_hosts']['median']:.1f} |"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, default=Path("../shared/datasets/cifar10-test"))
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--chunk", type=int, default=256, help="jobs.chunk_size (its default)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/two_hosts.json"))
    args = parser.parse_args()
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("unshare") is None:
        print("needs root, `ip` (iproute2) and `unshare`: it makes network namespaces")
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="vn-two-hosts-"))
    root = tmp / "root"
    files = unpack(args.images.resolve(), args.files, root)
    if files % args.chunk:
        print(f"note: {files} files is not a multiple of the chunk ({args.chunk}): one short "
              "chunk counts as full in its host's files (capped at the total)")  # fmt: skip
    tag = f"{os.getpid() % 100000}"
    ns_a, ns_b, veth = f"vn24a-{tag}", f"vn24b-{tag}", f"vn{tag}"
    make_namespaces(ns_a, ns_b, veth)
    env_a = host_env(
        tmp / "a",
        root,
        args.chunk,
        VISIONNET_WEB__WORKERS="1",
        VISIONNET_STACK__REDIS_BIND=ADDR_A,
        VISIONNET_STACK__REDIS_PORT=str(REDIS_PORT),
        VISIONNET_STACK__REDIS_PASSWORD=REDIS_PASSWORD,
        VISIONNET_MILVUS__ENGINE="server",
        VISIONNET_MILVUS__EMBEDDED_HOST=ADDR_A,
    )
    env_b = host_env(
        tmp / "b",
        root,
        args.chunk,
        VISIONNET_REDIS_URL=f"redis://:{quote(REDIS_PASSWORD, safe='')}@{ADDR_A}:{REDIS_PORT}/0",
        VISIONNET_MILVUS__URI=f"http://{ADDR_A}:{MILVUS_PORT}",
    )
    logs = {"a": tmp / "a.log", "b": tmp / "b.log"}
    a = up_in(ns_a, "vn-host-a", env_a, ROLES_A, logs["a"])
    b = up_in(ns_b, "vn-host-b", env_b, ROLES_B, logs["b"])
    hosts = TwoHosts(ns_a, ns_b, root, a, b, InNetns(ns_a), InNetns(ns_b), logs)
    runs: list[dict[str, Any]] = []
    started = time.monotonic()
    try:
        wait_for_workers(hosts, {"store@vn-host-a", A, B}, timeout=600)
        print(f"both hosts up in {time.monotonic() - started:.0f} s; {files} files under {root}")
        for n in range(args.rounds):
            if n:
                start_b(hosts, env_b)
            for layout in ("A + B", "A alone"):
                job = run_job(hosts, f"two_hosts_{n}_{'ab' if '+' in layout else 'a'}")
                runs.append(measure(job, layout, files, args.chunk))
                r = runs[-1]
                split = {k.split("@")[1]: v["chunks"] for k, v in r["hosts"].items()}
                print(f"round {n + 1} {layout}: {r['wall_s']:.1f} s, {r['img_s']:.0f} img/s, "
                      f"chunks {split}", flush=True)  # fmt: skip
                if layout == "A + B":
                    stop_b(hosts)
    except Exception:
        print("\n".join(f"--- {k}\n{v.read_text()[-3000:]}" for k, v in logs.items()))
        raise
    finally:
        for proc in (hosts.b, hosts.a):
            stop(proc)
        hosts.in_a.close()
        hosts.in_b.close()
        delete_namespaces(ns_a, ns_b)
        shutil.rmtree(tmp, ignore_errors=True)
    summary = summarize(runs)
    cores = os.cpu_count() or 0
    print_table(summary, files, args.chunk, cores)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "files": files,
                "chunk": args.chunk,
                "rounds": args.rounds,
                "cpu_cores": cores,
                "model": "builtin:demo-cifar10 (profile demo)",
                "note": "both hosts share this machine's cores (B adds a worker, not cores): "
                "not a scaling figure",
                "summary": summary,
                "runs": runs,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
