"""The ``visionnet`` command: run the whole stack, or any one of its processes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from config.settings import get_settings


@click.group()
def main() -> None:
    """VisionNet: image classification, indexing and similarity search as jobs."""


@main.command()
@click.option("--no-flower", is_flag=True, help="Do not start Flower.")
def up(no_flower: bool) -> None:
    """Start the embedded stack on this machine; Ctrl-C stops all of it."""
    import honcho.manager

    from visionnet.services_local import child_env, processes

    settings = get_settings()
    settings.data_path.mkdir(parents=True, exist_ok=True)
    if settings.profile == "demo":
        _ensure_demo_model(settings.demo_model_dir)
    env = child_env(settings)
    # Give a worker in warm shutdown time to finish its task (a store write
    # ends with a flush) before honcho resorts to SIGKILL.
    honcho.manager.KILL_WAIT = 30
    manager = honcho.manager.Manager()
    for name, cmd in processes(settings, flower=not no_flower).items():
        manager.add_process(name, cmd, env=env)
    click.echo(
        f"VisionNet: web http://{settings.web.host}:{settings.web.port}/  "
        f"Flower http://{settings.flower.host}:{settings.flower.port}/  "
        f"data {settings.data_path}  profile {settings.profile}"
    )
    manager.loop()
    # 130/143: stopped by Ctrl-C or SIGTERM as asked, every process ended: success.
    rc = manager.returncode or 0
    sys.exit(0 if rc in (130, 143) else rc)


@main.command()
def web() -> None:
    """Serve the web front end (waitress)."""
    import waitress

    from web import create_app

    settings = get_settings()
    waitress.serve(
        create_app(),
        host=settings.web.host,
        port=settings.web.port,
        threads=settings.web.threads,
        max_request_body_size=settings.web.max_upload_bytes,
    )


@main.command()
@click.argument("kind", type=click.Choice(["models", "store"]))
@click.option("--gpu", type=int, default=None, help="Pin this model worker to one GPU.")
@click.option("--name", default=None, help="Celery node name (default KIND@%h).")
@click.option("--loglevel", default="INFO")
def worker(kind: str, gpu: int | None, name: str | None, loglevel: str) -> None:
    """Run a worker: ``models`` (one per GPU) or ``store`` (the single vector writer)."""
    from visionnet.queues import MODELS_QUEUE, STORE_QUEUE

    if gpu is not None:
        if kind != "models":
            raise click.UsageError("--gpu applies to model workers only")
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
        os.environ["VISIONNET_MODELS__DEVICE"] = "cuda"
    from workers.celery_app import app

    if kind == "store":
        from visionnet.redis_conn import connect
        from workers.store.writer_lock import WriterLockTakenError, hold_writer_lock

        settings = get_settings()
        try:
            hold_writer_lock(
                connect(settings.effective_redis_url), settings.milvus.writer_lock_wait_s
            )
        except WriterLockTakenError as exc:
            raise click.ClickException(str(exc)) from exc
    queue = MODELS_QUEUE if kind == "models" else STORE_QUEUE
    default_name = f"{kind}-gpu{gpu}@%h" if gpu is not None else f"{kind}@%h"
    app.worker_main(
        [
            "worker",
            "--queues",
            queue,
            # One process per worker: a model worker owns one device; the store
            # worker must be the only writer.
            "--concurrency",
            "1",
            "--hostname",
            name or default_name,
            "--task-events",
            "--loglevel",
            loglevel,
            "--without-mingle",
            "--without-gossip",
        ]
    )


@main.command()
def flower() -> None:
    """Serve Flower, the Celery dashboard (basic auth when configured)."""
    from workers.celery_app import app

    settings = get_settings()
    argv = ["flower", f"--address={settings.flower.host}", f"--port={settings.flower.port}"]
    if settings.flower.basic_auth:
        argv.append(f"--basic-auth={settings.flower.basic_auth}")
    app.start(argv)


@main.command("build-demo")
@click.argument("out_dir", type=click.Path(path_type=Path), required=False)
@click.option("--force", is_flag=True, help="Rebuild even if present.")
def build_demo(out_dir: Path | None, force: bool) -> None:
    """Build the demo profile's model (default: <data_dir>/models/demo-resnet)."""
    target = out_dir or get_settings().demo_model_dir
    _ensure_demo_model(target, force=force)


def _ensure_demo_model(target: Path, force: bool = False) -> None:
    from workers.models.demo import build_demo_model, ensure_demo_model, is_built

    if force:
        build_demo_model(target)
    elif not is_built(target):
        click.echo(f"building demo model in {target}")
        ensure_demo_model(target)


if __name__ == "__main__":
    main()
