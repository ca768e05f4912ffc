"""Container healthchecks: ``python -m visionnet.probe web|flower|worker``; exit 0 = healthy.

A container orchestrator restarts, or holds back the dependants of, whatever
fails its check, so each check asks only whether *this* container's process
serves, never whether the whole stack does: the web's own ``/health`` is 503
while a worker is missing, and a web container restarted for that would not
bring the worker back. The image has no curl; Python is what it surely has.
"""

from __future__ import annotations

import argparse
import http.client
import socket


def http_answers(port: int, path: str = "/", timeout_s: float = 5.0) -> bool:
    """Anything that answers HTTP below 500 on loopback serves.

    401 counts: the web and Flower in a container require auth, and the probe
    holds no credentials (they would show in ``docker inspect``).
    """
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        conn.request("GET", path)
        return conn.getresponse().status < 500
    except OSError:
        return False
    finally:
        conn.close()


def worker_alive(redis_url: str, host: str, timeout_s: float = 5.0) -> bool:
    """A worker of this host has a liveness record in Redis that has not expired.

    Workers renew their records on a timer (``visionnet.core.liveness``); a hung
    or killed worker's record expires by Redis' clock. No broadcast to the
    workers (``celery inspect ping``), which every probe of every container
    would otherwise send to all of them.
    """
    import redis

    from visionnet.core.liveness import WorkerRegistry
    from visionnet.core.redis_conn import connect

    try:
        workers = WorkerRegistry(connect(redis_url, timeout_s=timeout_s)).alive()
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
        return False
    return any(w.host == host for w in workers)


def parser() -> argparse.ArgumentParser:
    """The probe's arguments; the compose test parses every healthcheck with it."""
    p = argparse.ArgumentParser(prog="python -m visionnet.probe", description=__doc__)
    sub = p.add_subparsers(dest="what", required=True)
    for name, port in (("web", 8000), ("flower", 5555)):
        s = sub.add_parser(name, help=f"the {name} answers HTTP on loopback")
        s.add_argument("--port", type=int, default=port)
        s.add_argument("--path", default="/")
    sub.add_parser("worker", help="a worker of this host has a live record in Redis")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.what == "worker":
        from visionnet.config.settings import get_settings

        ok = worker_alive(get_settings().effective_redis_url, socket.gethostname())
    else:
        ok = http_answers(args.port, args.path)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
