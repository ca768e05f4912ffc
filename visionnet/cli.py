"""The ``visionnet`` command: run the whole stack, or any one of its processes."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Literal

import click

from visionnet.config.settings import SettingsError, get_settings


class _Main(click.Group):
    """Settings that stop the start are shown as their message, not a traceback: exit 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SettingsError as exc:
            click.echo(f"VisionNet: the settings stop the start:\n{exc}", err=True)
            ctx.exit(2)


@click.group(cls=_Main)
def main() -> None:
    """VisionNet: image classification, indexing and similarity search as jobs."""


@main.command()
@click.option("--no-flower", is_flag=True, help="Do not start Flower.")
@click.option(
    "--roles",
    default="all",
    show_default=True,
    help="What this host runs, comma-separated: redis, milvus, web, store, interactive, "
    "models, flower (e.g. 'models' on a GPU host, given the main host's redis_url and "
    "milvus.uri).",
)
def up(no_flower: bool, roles: str) -> None:
    """Start the embedded stack (or this host's roles of it) under supervisord; Ctrl-C
    stops all of it.

    A process that dies is restarted; Ctrl-C stops web and Flower, then the
    workers (warm shutdown), then Milvus, then Redis. Each process logs to
    ``<data_dir>/logs/<name>.log``.
    """
    import time

    from visionnet.stack import (
        RolesError,
        check_roles,
        child_env,
        parse_roles,
        supervisor_paths,
        write_supervisor_config,
    )
    from visionnet.unacked import live_stack_processes

    settings = get_settings()
    try:
        chosen = parse_roles(roles)
        check_roles(settings, chosen)
    except RolesError as exc:
        raise click.UsageError(str(exc)) from exc
    settings.data_path.mkdir(parents=True, exist_ok=True)
    # What the workers of an earlier embedded stack held when it died goes back
    # to the queues as soon as Redis is up (visionnet.unacked), not after
    # jobs.redelivery_timeout_s; only if none of them runs. An external Redis, or
    # one that serves other hosts' workers: never.
    hand_back_before: float | None = None
    if "redis" in chosen and not settings.redis_url and not settings.stack.redis_bind:
        hand_back_before = time.time()
        alive = live_stack_processes(settings)
        if alive:
            hand_back_before = None
            click.echo("VisionNet: an earlier stack on this data directory still runs: "
                       + ", ".join(alive[:5]))  # fmt: skip
    conf = write_supervisor_config(
        settings, flower=not no_flower, hand_back_before=hand_back_before, roles=chosen
    )
    on = "off" if no_flower or "flower" not in chosen else "on"
    flower = f"http://{settings.flower.host}:{settings.flower.port}/" if on == "on" else on
    web = f"http://{settings.web.host}:{settings.web.port}/" if "web" in chosen else "off"
    click.echo(
        f"VisionNet: web {web}  Flower {flower}  "
        f"data {settings.data_path}  logs {supervisor_paths(settings)['logs']}  "
        f"profile {settings.profile}  roles {','.join(chosen)}"
    )
    supervisord = Path(sys.executable).with_name("supervisord")
    sys.stdout.flush()
    # supervisord takes this process's place: Ctrl-C and SIGTERM reach it directly.
    os.execve(
        str(supervisord), [str(supervisord), "--nodaemon", "-c", str(conf)], child_env(settings)
    )


@main.command("check-redis", hidden=True)
@click.option("--stop-stack", is_flag=True, help="On a problem, stop the supervising parent.")
@click.option(
    "--hand-back-before",
    type=float,
    default=None,
    help="Then put the tasks delivered before this Unix time (to a stack now gone) back.",
)
def check_redis(stop_stack: bool, hand_back_before: float | None) -> None:
    """Check that the embedded Redis keeps job records (persistence settings read back)."""
    import signal

    from visionnet.stack import redis_persistence_problems

    problems = redis_persistence_problems(get_settings())
    if not problems:
        click.echo("VisionNet: Redis persistence checked (append-only file, fsync on every write)")
        if hand_back_before is not None:
            _hand_back(hand_back_before)
        return
    click.echo("VisionNet: stopping, job records would not survive: " + "; ".join(problems))
    if stop_stack:
        os.kill(os.getppid(), signal.SIGTERM)
    sys.exit(1)


def _hand_back(before: float) -> None:
    """The earlier stack's unacknowledged tasks, back in their queues (visionnet.unacked)."""
    from visionnet.unacked import hand_back

    try:
        count = hand_back(get_settings(), before)
    except Exception as exc:  # they still come back after jobs.redelivery_timeout_s
        click.echo(f"VisionNet: could not hand back the stopped stack's tasks: {exc!r}")
        sys.exit(1)
    if count:
        click.echo(f"VisionNet: {count} task(s) the stopped stack held are queued again")


@main.command("stack-guard", hidden=True)
def stack_guard() -> None:
    """supervisord event listener: a process that cannot start stops the whole stack."""
    import signal

    from supervisor import childutils

    while True:
        _headers, payload = childutils.listener.wait(sys.stdin, sys.stdout)
        fields = dict(token.split(":", 1) for token in payload.split())
        click.echo(
            f"VisionNet: process {fields.get('processname')!r} could not start "
            f"(see its log); stopping the stack",
            err=True,
        )
        childutils.listener.ok(sys.stdout)
        os.kill(os.getppid(), signal.SIGTERM)


@main.command("milvus-server", hidden=True)
def milvus_server() -> None:
    """Become the embedded stack's real Milvus server (milvus.engine = "server")."""
    from visionnet.milvus_server import IsolationError, PortTakenError, run

    settings = get_settings()
    m = settings.milvus
    try:
        run(
            settings.data_path / "milvus-server",
            m.embedded_port,
            m.server_bin_dir.expanduser(),
            isolate=m.server_isolation == "netns",
            overrides={"dataCoord.segment.maxSize": str(m.server_segment_max_mb)},
            host=m.embedded_host,
            root_password=m.token.partition(":")[2] if m.token else "",
        )
    except (IsolationError, PortTakenError) as exc:
        raise click.ClickException(str(exc)) from exc


@main.command("catalog-rebuild")
@click.argument("names", nargs=-1)
def catalog_rebuild(names: tuple[str, ...]) -> None:
    """Rebuild the collection list and image catalog in Redis from the vector store
    (collections indexed before they existed, or after Redis lost its data)."""
    from visionnet.workers.base import WorkerContext
    from visionnet.workers.store_writer.rebuild import rebuild_catalog

    counts = rebuild_catalog(WorkerContext(get_settings()), names or None)
    for name, count in counts.items():
        click.echo(f"{name}: {count} images")


@main.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--collection", "-c", required=True, help="The collection to fill.")
@click.option("--uri", default="", help="Milvus URI (default: milvus.uri, or the embedded one).")
@click.option("--token", default="", help="Milvus token (default: milvus.token).")
def import_file(file: Path, collection: str, uri: str, token: str) -> None:
    """Load an export file (Parquet: ids, metadata, vectors) into a collection of any
    store, without embedding again; re-running it writes the same rows."""
    from visionnet.workers.store_writer.importer import ImportRefusedError, import_with_progress

    try:
        summary = import_with_progress(get_settings(), file, collection, uri=uri, token=token)
    except ImportRefusedError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(summary.describe())


@main.command()
def web() -> None:
    """Serve the web front end (gunicorn: web.workers processes x web.threads threads)."""
    from visionnet.web.server import serve

    serve(get_settings())


@main.command()
@click.argument("kind", type=click.Choice(["models", "interactive", "store"]))
@click.option("--gpu", type=int, default=None, help="Run one worker pinned to this GPU.")
@click.option(
    "--gpus",
    default=None,
    help="Model workers: one per GPU of this list (0,2) or 'all' (the default: every "
    "GPU nvidia-smi lists; none: one worker on the CPU).",
)
@click.option(
    "--queues",
    default=None,
    help="Model workers: queues to consume, in order (default models,bulk; 'bulk' where "
    "an interactive worker takes the models queue).",
)
@click.option("--name", default=None, help="Celery node name (default KIND@%h).")
@click.option("--loglevel", default="INFO")
def worker(
    kind: str,
    gpu: int | None,
    gpus: str | None,
    queues: str | None,
    name: str | None,
    loglevel: str,
) -> None:
    """Run a worker.

    \b
    models       bulk work (index chunks) and, by default, interactive work; one per GPU
    interactive  classify, embed and search in threads, their images sharing forward
                 passes (dynamic batching); the models queue only
    store        the single vector writer
    """
    from visionnet.core.queues import MODEL_WORKER_QUEUES, MODELS_QUEUE, STORE_QUEUE

    if kind == "store" and (gpu is not None or gpus is not None):
        raise click.UsageError("--gpu and --gpus apply to model workers only")
    if kind != "models" and (gpus is not None or queues is not None):
        raise click.UsageError("--gpus and --queues apply to `worker models` only")
    queue = queues or ",".join(MODEL_WORKER_QUEUES)
    if kind == "models" and gpu is None:
        from visionnet.gpus import parse_gpus

        try:
            chosen = parse_gpus(gpus or "all")
        except ValueError as exc:
            raise click.UsageError(str(exc)) from exc
        if chosen:
            sys.exit(_launch_gpu_workers(chosen, queue, loglevel))
    if kind == "models" and gpu is None:
        _split_cpu_threads()
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
        # Pinned: the one visible GPU is "cuda". An explicit "cpu" stays (tests, operators).
        if get_settings().models.device != "cpu":
            os.environ["VISIONNET_MODELS__DEVICE"] = "cuda"
            get_settings.cache_clear()
    from visionnet.workers.celery_app import app

    # Which models the worker loads as it starts (workers/model_worker/warmup.py).
    warm = {"interactive": "classifier,embedder", "store": ""}.get(
        kind, "classifier,embedder" if MODELS_QUEUE in queue.split(",") else "embedder"
    )
    os.environ["VISIONNET_WORKER_WARMUP"] = warm
    lock = _store_writer_lock() if kind == "store" else None
    suffix = f"-gpu{gpu}" if gpu is not None else ""
    hostname = name or f"{kind}{suffix}@%h"
    if kind == "interactive":
        _limit_cpu_threads(get_settings().models.interactive_cpu_threads)
        # Threads, not prefork: every request in flight waits in the same
        # process for its share of a batched forward pass.
        options = [
            "--pool",
            "threads",
            "--concurrency",
            str(get_settings().models.interactive_threads),
        ]
        queue = MODELS_QUEUE
    else:
        # One process per worker: a model worker owns one device; the store
        # worker must be the only writer.
        options = ["--concurrency", "1"]
        queue = STORE_QUEUE if kind == "store" else queue
    try:
        _run_worker(app, queue, hostname, loglevel, options)
    finally:
        if lock is not None:
            lock.release()  # a clean stop hands the lock on at once


def _split_cpu_threads() -> None:
    """A model worker on the CPU: each of its concurrent passes gets cores / passes threads.

    Through ``OMP_NUM_THREADS``, which torch reads when the pool process imports
    it (the prefork parent never imports torch); one set by the user stays.
    """
    from visionnet.workers.models.runtime import bulk_passes

    m = get_settings().models
    cores = os.cpu_count() or 1
    passes = bulk_passes(m.bulk_passes_at_once, "cpu" if m.device == "auto" else m.device, cores)
    if passes > 1:
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, cores // passes)))


def _limit_cpu_threads(threads: int) -> None:
    """Set torch's intra-op threads for this process's passes (0: leave torch's default).

    For the interactive worker, whose threads pool runs its passes in this
    process: no fork follows, and importing torch does not initialise CUDA.
    """
    if threads:
        import torch

        torch.set_num_threads(threads)


def _store_writer_lock() -> Any:
    from visionnet.core.redis_conn import connect
    from visionnet.workers.store_writer.fence import TOKEN_ENV
    from visionnet.workers.store_writer.writer_lock import WriterLockTakenError, hold_writer_lock

    settings = get_settings()
    try:
        lock = hold_writer_lock(
            connect(settings.effective_redis_url),
            settings.milvus.writer_lock_wait_s,
            settings.milvus.writer_lock_ttl_s,
        )
    except WriterLockTakenError as exc:
        raise click.ClickException(str(exc)) from exc
    # The pool processes, forked after this, fence their writes with the token.
    os.environ[TOKEN_ENV] = lock.token
    return lock


def _launch_gpu_workers(gpus: list[str], queues: str, loglevel: str) -> int:
    """One ``visionnet worker models --gpu N`` process per GPU; stops them all together.

    Each worker is an ordinary Celery worker (prefork, concurrency 1) that sees
    one GPU. If one exits, the others are stopped and the launcher exits with
    its status, for the supervisor above (supervisord, systemd, Kubernetes) to
    restart the set.
    """
    import signal
    import subprocess
    import time

    cli = str(Path(sys.executable).with_name("visionnet"))
    argv = ["worker", "models", "--queues", queues, "--loglevel", loglevel]
    children = [
        subprocess.Popen(
            [cli, *argv, "--gpu", g],
            env=dict(os.environ, CUDA_VISIBLE_DEVICES=g),  # in its environment from the start
        )
        for g in gpus
    ]
    click.echo(f"VisionNet: model workers on GPUs {','.join(gpus)}: pids "
               + " ".join(str(c.pid) for c in children))  # fmt: skip

    forwarded: set[int] = set()

    def forward(signum: int, _frame: Any) -> None:
        forwarded.add(signum)
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(signum, forward)
    while all(child.poll() is None for child in children):
        time.sleep(0.5)
    # A worker that ended on its own fails the set; its code is the launcher's.
    own = [c.returncode for c in children if c.returncode] if not forwarded else []
    if not forwarded:
        forward(signal.SIGTERM, None)
    # Each stop signal goes to a worker once: a second one can land while Python
    # is exiting, after it has put back the default handlers, and kill it.
    codes = [child.wait() for child in children]
    # A worker ended by the very signal it was sent stopped as asked.
    failed = own or [c for c in codes if c and -c not in forwarded]
    return _exit_status(failed[0]) if failed else 0


def _exit_status(returncode: int) -> int:
    """A child's return code as a shell would report it (killed by signal N: 128 + N)."""
    return 128 - returncode if returncode < 0 else returncode


def _run_worker(app: Any, queue: str, hostname: str, loglevel: str, options: list[str]) -> None:
    app.worker_main(
        [
            "worker",
            "--queues",
            queue,
            *options,
            "--hostname",
            hostname,
            # Task events follow flower.task_events (celery_config); Flower turns them on.
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
@click.option(
    "--optimizer",
    type=click.Choice(["muon", "sgd"]),
    default="muon",
    show_default=True,
    help="muon: airbench94_muon's recipe (8 epochs, batch 2,000); sgd: airbench94's "
    "(9.9 epochs, batch 1,024).",
)
@click.option("--epochs", type=float, help="Most epochs to run [default: the recipe's].")
@click.option(
    "--time-budget-min",
    type=float,
    help="Fit the schedule into this many minutes, evaluation included (fewer steps on a "
    "slow machine).",
)
@click.option(
    "--curve-images",
    type=int,
    default=2000,
    show_default=True,
    help="Eval images scored after every epoch, for the time/accuracy curve (0: none).",
)
@click.option("--image-size", type=int, default=32, show_default=True)
@click.option("--widths", default="64,256,256", show_default=True, callback=_int_tuple)
@click.option("--batch-size", type=int, help="Examples per step [default: the recipe's].")
@click.option(
    "--micro-batch",
    type=int,
    default=500,
    show_default=True,
    help="Examples per forward/backward pass; gradients summed up to the batch.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N.")
def train_demo(
    data_dir: Path,
    out_dir: Path,
    eval_dir: Path | None,
    optimizer: Literal["muon", "sgd"],
    epochs: float | None,
    time_budget_min: float | None,
    curve_images: int,
    image_size: int,
    widths: tuple[int, ...],
    batch_size: int | None,
    micro_batch: int,
    seed: int,
    device: str,
) -> None:
    """Train the demo classifier on DATA_DIR (<class>/<image> folders); save it to OUT_DIR.

    The model is a CifarNet trained with airbench's recipe. OUT_DIR loads like
    any hub model; point VISIONNET_MODELS__CLASSIFIER and
    VISIONNET_MODELS__EMBEDDER at it, or replace the shipped demo weights.
    """
    from visionnet.training.recipe import Recipe
    from visionnet.training.trainer import train_demo as run

    try:
        recipe = Recipe.named(
            optimizer,
            image_size=image_size,
            widths=widths,
            epochs=epochs,
            batch_size=batch_size,
            micro_batch=micro_batch,
            seed=seed,
        )
        report = run(
            data_dir,
            out_dir,
            recipe,
            eval_dir=eval_dir,
            device=device,
            time_budget_s=time_budget_min * 60 if time_budget_min else None,
            curve_images=curve_images,
            echo=click.echo,
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"saved to {out_dir}: {report['epochs_run']} epochs, {report['timings']}")


def _add_client_commands() -> None:
    from visionnet.cli_client import COMMANDS

    for command in COMMANDS:
        main.add_command(command)


_add_client_commands()

if __name__ == "__main__":
    main()
