"""The ``visionnet`` commands that talk to a running VisionNet over its HTTP API.

Tables for people by default, ``--json`` for scripts. Exit status: 0 the job
succeeded (or the request did), 1 the job failed or was cancelled, 3 the API
refused the request, 4 the API could not be reached, 130 detached by Ctrl-C
(the job goes on).
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import requests
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from visionnet.client import FINAL_STATES, TOKEN_ENV, APIError, Client, Job

EXIT_JOB_FAILED, EXIT_API_ERROR, EXIT_UNREACHABLE, EXIT_DETACHED = 1, 3, 4, 130
URL_ENV = "VISIONNET_URL"
console = Console(stderr=True)


def _client(url: str | None) -> Client:
    """The API at --url, $VISIONNET_URL, or this machine's configured web address."""
    token = os.environ.get(TOKEN_ENV)
    if url is None and os.environ.get(URL_ENV):
        url = os.environ[URL_ENV]
    if url is None or token is None:
        from visionnet.config.settings import get_settings

        web = get_settings().web
        host = "127.0.0.1" if web.host in ("0.0.0.0", "::") else web.host
        url = url or f"http://{host}:{web.port}"
        token = token if token is not None else web.api_token
    return Client(url, token=token)


def url_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--url", default=None, help=f"API base URL (default ${URL_ENV} or local).")(
        f
    )


def json_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(f)


def _run(call: Callable[[], int]) -> None:
    """Run a command body; API errors become exit statuses with a readable message."""
    try:
        sys.exit(call())
    except APIError as exc:
        console.print(f"[red]error:[/red] {exc.message} (HTTP {exc.status} {exc.error})")
        sys.exit(EXIT_API_ERROR)
    except requests.ConnectionError as exc:
        console.print(f"[red]error:[/red] cannot reach the VisionNet API: {exc}")
        sys.exit(EXIT_UNREACHABLE)


def _follow(client: Client, job_id: str, as_json: bool) -> int:
    """Wait for a job with a live bar; Ctrl-C detaches and says how to re-attach."""
    try:
        job = client.wait(job_id) if as_json else _with_bar(client, job_id)
    except KeyboardInterrupt:
        console.print(f"detached; job {job_id} goes on. Re-attach: visionnet job {job_id} --wait")
        return EXIT_DETACHED
    _print_job(job, as_json)
    return 0 if job["state"] == "succeeded" else EXIT_JOB_FAILED


def _with_bar(client: Client, job_id: str) -> Job:
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TextColumn("ETA {task.fields[eta]}"),
        TextColumn("[red]{task.fields[failed]} failed"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(job_id[:8], total=None, rate="", eta="-", failed=0)

        def show(job: Job) -> None:
            p = job["progress"]
            rate = p.get("files_per_s")
            eta = p.get("eta_s")
            bar.update(
                task,
                total=p["total"] or None,
                completed=p["done"],
                description=f"{job['type']} {job['state']}",
                rate=f"{rate:,.0f} img/s" if rate else "",
                eta=f"{eta:,.0f}s" if eta is not None else "-",
                failed=p["failed"],
            )

        return client.wait(job_id, on_progress=show)


def _print_job(job: Job, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(job, indent=2))
        return
    p, result = job["progress"], job.get("result") or {}
    table = Table(show_header=False, box=None)
    table.add_row("job", job["id"])
    table.add_row("type / state", f"{job['type']} / {job['state']}")
    table.add_row("progress", f"{p['done']}/{p['total']} done, {p['failed']} failed")
    if job["type"] == "index" and result:
        table.add_row("stored", f"{result['indexed']} new, {result['skipped']} already there")
        table.add_row("collection", str(result.get("collection")))
    if job.get("error"):
        table.add_row("error", f"[red]{job['error']}[/red]")
    for err in result.get("errors", [])[:10]:
        table.add_row("failed file", f"{err['path']}: {err['error']}")
    if job["type"] == "classify" and result:
        for image in result["images"]:
            labels = ", ".join(f"{p['label']} {p['score']:.2f}" for p in image["predictions"])
            table.add_row(image["name"], labels or image.get("error", ""))
    if job["type"] == "search" and result:
        for hit in result.get("hits", []):
            size = f"  {hit['width']}x{hit['height']}" if hit.get("width") else ""
            label = f"  [{hit['label']}]" if hit.get("label") else ""
            table.add_row(f"{hit['score']:.3f}", f"{hit['path']}{size}{label}")
    if job["type"] == "delete" and result:
        table.add_row("deleted", f"{result['deleted']} from {result['collection']}")
    if job["type"] == "export" and result:
        table.add_row("exported", f"{result['rows']} rows, {result['bytes']:,} bytes")
    if job["type"] == "duplicates" and result:
        table.add_row(
            "groups",
            f"{result['groups']} ({result['images_in_groups']} of {result['images']} images); "
            f"listed by GET /api/v1/jobs/{job['id']}/groups",
        )
    Console().print(table)


@click.command("index")
@click.argument(
    "folder", type=click.Path(exists=True, path_type=Path), metavar="DIR|ARCHIVE", required=False
)
@click.option("--collection", "-c", required=True, help="Collection to index into.")
@click.option(
    "--urls",
    "url_list",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="A list of image URLs to download and index instead (uploaded): text, one URL a "
    "line, or CSV/Parquet with a 'url' column.",
)
@click.option("--wait/--no-wait", default=True, help="Follow the job with a progress bar.")
@click.option(
    "--classify/--no-classify",
    default=None,
    help="Also store each image's top label, for --filter label=... (default: the server's).",
)
@url_option
@json_option
def index_cmd(
    folder: Path | None,
    collection: str,
    url_list: Path | None,
    wait: bool,
    classify: bool | None,
    url: str | None,
    as_json: bool,
) -> None:
    """Index a folder (recursively; under the server's allowed roots), upload a zip or
    tar archive of images to index, or (--urls FILE) a list of image URLs to download."""
    if (folder is None) == (url_list is None):
        raise click.UsageError("give a DIR or ARCHIVE, or --urls FILE")

    def body() -> int:
        client = _client(url)
        if url_list is not None:
            job_id = client.index_urls(url_list, collection, classify=classify)
        elif folder is not None and folder.is_dir():
            job_id = client.index(folder, collection, classify=classify)
        else:
            assert folder is not None
            job_id = client.index_archive(folder, collection, classify=classify)
        if not wait:
            click.echo(json.dumps({"job_id": job_id}) if as_json else job_id)
            return 0
        return _follow(client, job_id, as_json)

    _run(body)


@click.command("jobs")
@click.option("--type", "job_type", default=None, help="Only this job type.")
@click.option("--state", default=None, help="Only this state.")
@click.option("--limit", default=20, show_default=True)
@url_option
@json_option
def jobs_cmd(
    job_type: str | None, state: str | None, limit: int, url: str | None, as_json: bool
) -> None:
    """List jobs, newest first."""

    def body() -> int:
        page = _client(url).jobs(type=job_type, state=state, limit=limit)
        if as_json:
            click.echo(json.dumps(page, indent=2))
            return 0
        table = Table("id", "type", "state", "progress", "created")
        for job in page["jobs"]:
            p = job["progress"]
            table.add_row(
                job["id"], job["type"], job["state"], f"{p['done']}/{p['total']}", job["created_at"]
            )
        Console().print(table)
        return 0

    _run(body)


@click.command("job")
@click.argument("job_id")
@click.option("--wait", is_flag=True, help="Follow it with a progress bar until it ends.")
@click.option("--cancel", is_flag=True, help="Cancel it.")
@click.option("--retry", is_flag=True, help="Run its failed files again, as a new job.")
@url_option
@json_option
def job_cmd(
    job_id: str, wait: bool, cancel: bool, retry: bool, url: str | None, as_json: bool
) -> None:
    """Show one job (or wait for it, cancel it, or retry its failed files)."""

    def body() -> int:
        client = _client(url)
        if retry:
            accepted = client.retry(job_id)
            for err in accepted["not_retried"]:
                console.print(f"not retried (fails for good): {err['path']}: {err['error']}")
            console.print(f"retrying {accepted['retried']} file(s) as job {accepted['job_id']}")
            return _follow(client, accepted["job_id"], as_json) if wait else 0
        if cancel:
            job = client.cancel(job_id)
        elif wait:
            return _follow(client, job_id, as_json)
        else:
            job = client.job(job_id)
        _print_job(job, as_json)
        return EXIT_JOB_FAILED if job["state"] in FINAL_STATES - {"succeeded"} else 0

    _run(body)


@click.command("classify")
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--top-k", "-k", type=int, default=None)
@click.option(
    "--label",
    "labels",
    multiple=True,
    help="Classify against these words instead (repeatable; a CLIP embedder).",
)
@click.option("--prompt", default=None, help='Template of each --label, e.g. "a photo of {}".')
@url_option
@json_option
def classify_cmd(
    images: tuple[str, ...],
    top_k: int | None,
    labels: tuple[str, ...],
    prompt: str | None,
    url: str | None,
    as_json: bool,
) -> None:
    """Classify image files (uploaded) and print their labels."""

    def body() -> int:
        client = _client(url)
        job = client.wait(client.classify(list(images), top_k, labels=labels, prompt=prompt))
        _print_job(job, as_json)
        return 0 if job["state"] == "succeeded" else EXIT_JOB_FAILED

    _run(body)


FILTERS = (
    "path_prefix",
    "min_width",
    "max_width",
    "min_height",
    "max_height",
    "indexed_after",
    "indexed_before",
    "label",
)


def _filters(given: tuple[str, ...]) -> dict[str, str]:
    found: dict[str, str] = {}
    for item in given:
        name, sep, value = item.partition("=")
        if not sep or name not in FILTERS:
            raise click.BadParameter(
                f"{item!r}: give NAME=VALUE, NAME one of {', '.join(FILTERS)}",
                param_hint="--filter",
            )
        found[name] = value
    return found


@click.command("search")
@click.argument("images", nargs=-1, type=click.Path(exists=True), metavar="[IMAGE...|DIR]")
@click.option("--text", help="Search by a text instead of an image (CLIP embedders).")
@click.option("--collection", "-c", required=True)
@click.option("-k", type=int, default=None, help="How many similar images (per query).")
@click.option("--min-score", type=float, default=None, help="No hit with a lower cosine.")
@click.option(
    "--exclude-self", is_flag=True, help="Leave a query image out of its own hits if indexed."
)
@click.option(
    "--filter",
    "filters",
    multiple=True,
    metavar="NAME=VALUE",
    help="Only rows matching (repeatable): " + ", ".join(FILTERS) + ".",
)
@url_option
@json_option
def search_cmd(
    images: tuple[str, ...],
    text: str | None,
    collection: str,
    k: int | None,
    min_score: float | None,
    exclude_self: bool,
    filters: tuple[str, ...],
    url: str | None,
    as_json: bool,
) -> None:
    """Find the images of a collection most similar to IMAGE (uploaded), or to --text.

    Several IMAGEs (uploaded), or a DIR the server can read (every image under it),
    search at once: each query gets its own hits.
    """
    if bool(images) == (text is not None):
        raise click.UsageError("give either IMAGE (one or more, or a DIR) or --text")
    dirs = [p for p in images if Path(p).is_dir()]
    if dirs and len(images) > 1:
        raise click.UsageError("give one DIR, or image files")
    chosen = _filters(filters)

    def body() -> int:
        client = _client(url)
        if dirs or len(images) > 1:
            job_id = (
                client.search_folder(
                    dirs[0], collection, k, chosen, min_score=min_score, exclude_self=exclude_self
                )
                if dirs
                else client.search_many(
                    list(images),
                    collection,
                    k,
                    chosen,
                    min_score=min_score,
                    exclude_self=exclude_self,
                )
            )
            return _print_many(client, job_id, as_json)
        job_id = (
            client.search(
                images[0], collection, k, chosen, min_score=min_score, exclude_self=exclude_self
            )
            if images
            else client.search_by_text(str(text), collection, k, chosen)
        )
        job = client.wait(job_id)
        _print_job(job, as_json)
        return 0 if job["state"] == "succeeded" else EXIT_JOB_FAILED

    _run(body)


def _print_many(client: Client, job_id: str, as_json: bool, best: int = 3) -> int:
    """Each query's best hits (a table), or the job and every entry (--json)."""
    entries = list(client.all_results(job_id))
    job = client.job(job_id)
    if as_json:
        click.echo(json.dumps({"job": job, "entries": entries}, indent=2))
    else:
        table = Table(box=None)
        table.add_column("query", overflow="fold")
        table.add_column("score")
        table.add_column("best hits", overflow="fold")
        # Queries of a folder by their path under it: the long common part said once.
        names = [e["name"] for e in entries]
        common = (
            os.path.commonpath(names)
            if len(names) > 1 and all(n.startswith("/") for n in names)
            else ""
        )
        if common:
            table.title = f"queries under {common}"
        for entry in entries:
            shown = os.path.relpath(entry["name"], common) if common else entry["name"]
            if "error" in entry:
                table.add_row(shown, "", f"[red]{entry['error']}[/red]")
                continue
            hits = entry["hits"][:best] or [None]
            for i, hit in enumerate(hits):
                name = shown if i == 0 else ""
                if hit is None:
                    table.add_row(name, "", "(no hit)")
                else:
                    table.add_row(name, f"{hit['score']:.3f}", hit["path"])
        Console().print(table)
        if job.get("error"):
            console.print(f"[red]error:[/red] {job['error']}")
    return 0 if job["state"] == "succeeded" else EXIT_JOB_FAILED


@click.command("collections")
@click.argument("action", required=False, type=click.Choice(["rm"]))
@click.argument("name", required=False)
@url_option
@json_option
def collections_cmd(action: str | None, name: str | None, url: str | None, as_json: bool) -> None:
    """List collections, or `rm NAME` to drop one and its vectors."""

    def body() -> int:
        client = _client(url)
        if action == "rm":
            if not name:
                raise click.UsageError("rm needs the collection's name")
            entry = client.drop_collection(name)
            click.echo(json.dumps(entry) if as_json else f"dropping {name}")
            return 0
        found = client.collections()
        if as_json:
            click.echo(json.dumps(found, indent=2))
            return 0
        table = Table("name", "images", "model", "dim", "created", "state")
        for c in found:
            table.add_row(
                c["name"], str(c["count"]), c["model"], str(c["dim"]), c["created_at"], c["state"]
            )
        Console().print(table)
        return 0

    _run(body)


@click.command("export")
@click.argument("collection")
@click.argument("out", type=click.Path(dir_okay=False, writable=True, path_type=Path))
@url_option
@json_option
def export_cmd(collection: str, out: Path, url: str | None, as_json: bool) -> None:
    """Write COLLECTION's ids, metadata and vectors to OUT (a Parquet file)."""

    def body() -> int:
        client = _client(url)
        job_id = client.export(collection)
        status = _follow(client, job_id, as_json)
        if status != 0:
            return status
        written = client.download(job_id, out)
        if not as_json:
            console.print(f"wrote {written:,} bytes to {out}")
        return 0

    _run(body)


GROUP_COLUMNS = ("group", "keep", "id", "path", "size", "width", "height", "score")


@click.command("duplicates")
@click.argument("collection")
@click.option("--threshold", "-t", type=float, default=None, help="Cosine similarity cut-off.")
@click.option("--path-prefix", default=None, help="Only images whose path starts with this.")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV: one row per group member.")
@url_option
@json_option
def duplicates_cmd(
    collection: str,
    threshold: float | None,
    path_prefix: str | None,
    as_csv: bool,
    url: str | None,
    as_json: bool,
) -> None:
    """Find groups of near-duplicate images in COLLECTION; print them, largest first."""
    if as_json and as_csv:
        raise click.UsageError("give --json or --csv, not both")

    def body() -> int:
        client = _client(url)
        job_id = client.duplicates(collection, threshold=threshold, path_prefix=path_prefix)
        quiet = as_json or as_csv
        try:
            job = client.wait(job_id) if quiet else _with_bar(client, job_id)
        except KeyboardInterrupt:
            console.print(f"detached; job {job_id} goes on. Re-attach: visionnet job {job_id}")
            return EXIT_DETACHED
        if job["state"] != "succeeded":
            _print_job(job, as_json)
            return EXIT_JOB_FAILED
        groups = list(client.all_groups(job_id))
        if as_json:
            click.echo(json.dumps({"job_id": job_id, "result": job["result"], "groups": groups}))
        elif as_csv:
            writer = csv.writer(sys.stdout)
            writer.writerow(GROUP_COLUMNS)
            for number, group in enumerate(groups, 1):
                for m in group["members"]:
                    keep = m["id"] == group["keep"]
                    writer.writerow([number, keep, *(m[c] for c in GROUP_COLUMNS[2:])])
        else:
            _print_groups(job, groups)
        return 0

    _run(body)


def _print_groups(job: Job, groups: list[dict[str, Any]]) -> None:
    result = job["result"]
    table = Table("group", "", "score", "pixels", "bytes", "path")
    for number, group in enumerate(groups, 1):
        for m in group["members"]:
            table.add_row(
                str(number),
                "keep" if m["id"] == group["keep"] else "",
                f"{m['score']:.4f}",
                f"{m['width']}x{m['height']}",
                f"{m['size']:,}",
                m["path"],
            )
    Console().print(table)
    console.print(
        f"{result['groups']} group(s), {result['images_in_groups']} of {result['images']} "
        f"images, threshold {result['threshold']} (job {job['id']})"
    )


COMMANDS = (
    index_cmd,
    jobs_cmd,
    job_cmd,
    classify_cmd,
    search_cmd,
    collections_cmd,
    export_cmd,
    duplicates_cmd,
)
