"""The ``visionnet`` command: run the whole stack, or any one of its processes."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from visionnet.config.settings import Settings, get_settings


@click.group()
def main() -> None:
    """VisionNet: image classification, indexing and similarity search as jobs."""


@main.command()
@click.option("--no-flower", is_flag=True, help="Do not start Flower.")
def up(no_flower: bool) -> None:
    """Start the embedded stack on this machine; Ctrl-C stops all of it."""
    import honcho.manager

    from visionnet.stack import child_env, processes

    settings = get_settings()
    settings.data_path.mkdir(parents=True, exist_ok=True)
    env = child_env(settings)
    # Give a worker in warm shutdown time to finish its task (a store write
    # ends with a flush) before honcho resorts to SIGKILL.
    honcho.manager.KILL_WAIT = 30
    manager = honcho.manager.Manager()
    for name, cmd in processes(settings, flower=not no_flower).items():
        manager.add_process(name, cmd, env=env)
    if not settings.redis_url:
        _check_redis_in_background(settings, manager)
    click.echo(
        f"VisionNet: web http://{settings.web.host}:{settings.web.port}/  "
        f"Flower http://{settings.flower.host}:{settings.flower.port}/  "
        f"data {settings.data_path}  profile {settings.profile}"
    )
    manager.loop()
    # 130/143: stopped by Ctrl-C or SIGTERM as asked, every process ended: success.
    rc = manager.returncode or 0
    sys.exit(0 if rc in (130, 143) else rc)


def _check_redis_in_background(settings: Settings, manager: Any) -> None:
    """Stop the stack, loudly, if the embedded Redis would not keep job records."""
    import threading

    from visionnet.stack import redis_persistence_problems

    def check() -> None:
        problems = redis_persistence_problems(settings)
        if problems:
            click.echo("VisionNet: stopping, job records would not survive: " + "; ".join(problems))
            manager.terminate()

    threading.Thread(target=check, name="redis-check", daemon=True).start()


@main.command()
def web() -> None:
    """Serve the web front end (waitress)."""
    import waitress

    from visionnet.web import create_app

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
    from visionnet.core.queues import MODELS_QUEUE, STORE_QUEUE

    if gpu is not None:
        if kind != "models":
            raise click.UsageError("--gpu applies to model workers only")
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
        os.environ["VISIONNET_MODELS__DEVICE"] = "cuda"
    from visionnet.workers.celery_app import app

    if kind == "store":
        from visionnet.core.redis_conn import connect
        from visionnet.workers.store_writer.writer_lock import (
            WriterLockTakenError,
            hold_writer_lock,
        )

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
    from visionnet.workers.celery_app import app

    settings = get_settings()
    argv = ["flower", f"--address={settings.flower.host}", f"--port={settings.flower.port}"]
    if settings.flower.basic_auth:
        argv.append(f"--basic-auth={settings.flower.basic_auth}")
    app.start(argv)


def _int_tuple(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None


@main.command("train-demo")
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--eval-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Labeled folder to measure accuracy on, with the saved model.",
)
@click.option("--epochs", type=int, default=30, show_default=True, help="Most epochs to run.")
@click.option(
    "--time-budget-min",
    type=float,
    help="Fit the schedule into this many minutes (fewer epochs on a slow machine).",
)
@click.option("--image-size", type=int, default=64, show_default=True)
@click.option("--hidden-sizes", default="32,64,128,256", show_default=True, callback=_int_tuple)
@click.option("--depths", default="1,1,2,2", show_default=True, callback=_int_tuple)
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option("--max-lr", type=float, default=0.2, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N.")
def train_demo(
    data_dir: Path,
    out_dir: Path,
    eval_dir: Path | None,
    epochs: int,
    time_budget_min: float | None,
    image_size: int,
    hidden_sizes: tuple[int, ...],
    depths: tuple[int, ...],
    batch_size: int,
    max_lr: float,
    seed: int,
    device: str,
) -> None:
    """Train the demo classifier on DATA_DIR (<class>/<image> folders); save it to OUT_DIR.

    OUT_DIR loads like any hub model; point VISIONNET_MODELS__CLASSIFIER and
    VISIONNET_MODELS__EMBEDDER at it, or replace the shipped demo weights.
    """
    from visionnet.training.recipe import Recipe
    from visionnet.training.trainer import train_demo as run

    try:
        recipe = Recipe(
            image_size=image_size,
            hidden_sizes=hidden_sizes,
            depths=depths,
            epochs=epochs,
            batch_size=batch_size,
            max_lr=max_lr,
            seed=seed,
        )
        report = run(
            data_dir,
            out_dir,
            recipe,
            eval_dir=eval_dir,
            device=device,
            time_budget_s=time_budget_min * 60 if time_budget_min else None,
            echo=click.echo,
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"saved to {out_dir}: {report['epochs_run']} epochs, {report['timings']}")


if __name__ == "__main__":
    main()
