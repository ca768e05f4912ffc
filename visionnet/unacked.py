"""Handing back, at once, the tasks that the workers of a dead embedded stack held.

Tasks ack late. The Redis transport keeps each delivered, unacknowledged
message in the broker's ``unacked`` hash (scored by delivery time in
``unacked_index``) and puts it back in its queue only once it is older than
the visibility timeout (``jobs.redelivery_timeout_s``): no one can tell a dead
worker from a slow one. After a kill -9 of the whole embedded stack the chunks
in flight then wait that long.

``visionnet up`` can tell: the private Redis is its own, and it checks that no
process of the earlier stack still runs before it starts the new one. Every
message delivered before that moment was held by a worker that is gone, so it
goes back to the head of its queue now, the way kombu's own sweep does it
(``QoS.restore_by_tag``: queue and priority from the message, flagged
redelivered). Messages delivered later are the new workers' and stay. Never
with an external Redis: another host's workers may hold those messages.
"""

from __future__ import annotations

import os
from pathlib import Path

from visionnet.config.settings import Settings

# Programs of the embedded stack: supervisord and what it runs with child_env.
_PROC = Path("/proc")


def live_stack_processes(settings: Settings) -> list[str]:
    """Processes of an earlier embedded stack on this data directory that still run.

    Every child of the stack has ``VISIONNET_REDIS_URL`` pinned to the private
    Redis (``stack.child_env``), and supervisord records its pid. Read from
    /proc; where that cannot be read, "unknown" (so nothing is handed back).
    """
    from visionnet.stack import supervisor_paths

    if not _PROC.is_dir():
        return ["unknown (no /proc)"]
    mine = {os.getpid(), os.getppid()}
    pid_file = supervisor_paths(settings)["pid"]
    alive: list[str] = []
    try:
        old = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        old = 0
    if old and old not in mine and "supervisord" in _cmdline(old):
        alive.append(f"supervisord (pid {old})")
    want = f"VISIONNET_REDIS_URL={settings.effective_redis_url}".encode()
    for entry in _PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
        except OSError:  # gone, or another user's: it cannot open our 0700 socket
            continue
        if want in env:
            alive.append(f"{_cmdline(int(entry.name))} (pid {entry.name})")
    return alive


def _cmdline(pid: int) -> str:
    try:
        raw = (_PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def hand_back(settings: Settings, delivered_before: float) -> int:
    """Put every message delivered before ``delivered_before`` back in its queue, now.

    Only for the embedded stack, and only when no worker of the stack that
    took them is alive. Returns how many went back.
    """
    # The stack's children see the private Redis by URL (child_env): only that one.
    # (a password, without a bind, rides in that URL: redis+socket://:PW@/path).
    url = settings.effective_redis_url
    private = url.startswith("redis+socket://") and url.endswith(str(settings.redis_socket))
    if settings.stack.redis_bind or not private:
        raise ValueError(
            "never with an external Redis, or one that serves other hosts (stack.redis_bind): "
            "their workers may hold them"
        )
    from kombu.connection import Connection

    from visionnet.core.queues import celery_config

    conf = celery_config(settings)
    options = conf["broker_transport_options"]  # the same keys and timeouts as the workers'
    with Connection(conf["broker_url"], transport_options=options) as conn:  # type: ignore[no-untyped-call]
        channel = conn.default_channel
        client = channel.client
        tags = client.zrangebyscore(channel.unacked_index_key, "-inf", delivered_before)
        for tag in tags:
            channel.qos.restore_by_tag(tag, client)
    return len(tags)
