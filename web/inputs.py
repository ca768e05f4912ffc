"""Turning a validated request into a job's input, one function per input kind.

Each checks what it can before anything is queued (only images get through,
paths only under the allowed roots) and returns the job's size and the root
task's input arguments. Uploads are parked in Redis under the job's id.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from visionnet.core.datafiles import (
    archive_root,
    archive_upload_path,
    sweep,
    url_list_upload_path,
)
from visionnet.core.jobtypes import InputKind
from visionnet.core.pathtext import to_os
from visionnet.core.urllists import UrlListError, check_list
from visionnet.web.api.common import allowed_path
from visionnet.web.errors import APIError
from visionnet.web.services import Services
from visionnet.web.spooling import incoming_path
from visionnet.web.uploads import read_image_upload, save_archive_upload, save_url_list_upload


@dataclass(frozen=True)
class JobInput:
    total: int
    task_kwargs: dict[str, Any]


def require_text_tower(svc: Services, what: str) -> None:
    """400 before queueing where the workers published an embedder without a text tower.

    Where no worker has published one yet the job goes ahead; the worker then
    fails it with the same reason.
    """
    embedder = svc.models.get("embedder")
    if embedder is not None and not embedder.get("text_search"):
        raise APIError(
            400,
            "bad_request",
            f"the embedder {embedder['name']} has no text encoder: {what} needs a CLIP model "
            "(GET /api/v1/models)",
        )


def images_input(svc: Services, job_id: str, req: BaseModel) -> JobInput:
    if getattr(req, "labels", None):
        require_text_tower(svc, "labels from words")
    paths: list[str] | None = getattr(req, "paths", None)
    files: list[Any] = getattr(req, "files", None) or []
    return JobInput(len(paths or files), {"sources": _image_sources(svc, job_id, paths, files)})


def _image_sources(
    svc: Services, job_id: str, paths: list[str] | None, files: list[Any]
) -> list[dict[str, str]]:
    """Paths checked under the roots, or uploads parked as blobs; at most web.max_files."""
    count = len(paths) if paths is not None else len(files)
    if count > svc.settings.web.max_files:
        raise APIError(400, "bad_request", f"at most {svc.settings.web.max_files} images per job")
    if paths is not None:
        sources: list[dict[str, str]] = []
        for path in paths:
            resolved = allowed_path(path)
            if not Path(to_os(resolved)).exists():
                raise APIError(404, "not_found", f"{path!r} does not exist")
            if not Path(to_os(resolved)).is_file():
                raise APIError(400, "bad_request", f"{path!r} is not a file")
            sources.append({"path": resolved})
        return sources
    payloads = [(f.filename or f"upload-{i}", read_image_upload(f)) for i, f in enumerate(files)]
    return [
        {"blob": svc.blobs.put(job_id, i, data), "name": name}
        for i, (name, data) in enumerate(payloads)
    ]


def _folder_root(given: str) -> str:
    root = allowed_path(given)
    if not Path(to_os(root)).exists():
        raise APIError(404, "not_found", f"{given!r} does not exist")
    if not Path(to_os(root)).is_dir():
        raise APIError(400, "bad_request", f"{given!r} is not a directory")
    return root


def folder_input(svc: Services, job_id: str, req: BaseModel) -> JobInput:
    if getattr(req, "labels", None):
        require_text_tower(svc, "labels from words")
    upload = getattr(req, "archive", None)
    url_upload = getattr(req, "url_list", None)
    if (upload is None) == (url_upload is None) and not hasattr(req, "source"):
        raise APIError(400, "bad_request", "give either archive or url_list")
    if url_upload is not None:
        sweep(incoming_path(svc.settings), svc.settings.result_ttl_s)
        name = url_upload.filename or "url_list"
        saved = save_url_list_upload(url_upload, url_list_upload_path(svc.settings, job_id, name))
        _check_url_list(svc, saved, name, remove=True)
        return JobInput(0, {"root": "", "url_upload": str(saved)})
    if upload is not None:
        # Unpacked by the planner under the data directory, then walked like a folder.
        sweep(incoming_path(svc.settings), svc.settings.result_ttl_s)  # killed requests' parts
        saved = save_archive_upload(upload, archive_upload_path(svc.settings, job_id))
        return JobInput(0, {"root": str(archive_root(svc.settings, job_id)), "archive": str(saved)})
    source: Any = req.source  # type: ignore[attr-defined]
    if source.url_list is not None:
        listed = _list_file(source.url_list)
        _check_url_list(svc, Path(to_os(listed)), source.url_list, remove=False)
        return JobInput(0, {"root": "", "url_list": listed})  # the planner counts the URLs
    return JobInput(0, {"root": _folder_root(source.path)})  # the planner counts the files


def _list_file(given: str) -> str:
    listed = allowed_path(given)
    if not Path(to_os(listed)).is_file():
        if not Path(to_os(listed)).exists():
            raise APIError(404, "not_found", f"{given!r} does not exist")
        raise APIError(400, "bad_request", f"{given!r} is not a file")
    return listed


def _check_url_list(svc: Services, path: Path, name: str, *, remove: bool) -> None:
    """400 for a list the planner would refuse whole (no url column, unreadable, too long);
    single bad URLs are left to the job, as those URLs' errors."""
    try:
        check_list(path, svc.settings.jobs.max_list_urls)
    except (UrlListError, OSError) as exc:
        if remove:
            path.unlink(missing_ok=True)
        raise APIError(400, "bad_request", f"URL list {name!r} refused: {exc}") from exc


def query_input(svc: Services, job_id: str, req: BaseModel) -> JobInput:
    image_id: str | None = getattr(req, "image_id", None)
    text: str | None = getattr(req, "text", None)
    paths: list[str] | None = getattr(req, "paths", None)
    source: Any = getattr(req, "source", None)
    files: list[Any] | None = getattr(req, "files", None)
    upload: Any = getattr(req, "image", None)
    given = [x is not None for x in (image_id, text, paths, source, files, upload)]
    if sum(given) != 1:
        wanted = (
            "image or files"
            if hasattr(req, "image")
            else "image_id or text (or, for several query images, paths or source)"
        )
        raise APIError(400, "bad_request", f"give either {wanted}")
    if text is not None and getattr(req, "exclude_self", False):
        raise APIError(400, "bad_request", "exclude_self needs an image query, not text")
    if paths is not None or files is not None:
        sources = _image_sources(svc, job_id, paths, files or [])
        return JobInput(len(sources), {"query": {"sources": sources}})
    if source is not None:
        return JobInput(0, {"query": {"root": _folder_root(source.path)}})  # walked by the task
    if image_id is not None:
        return JobInput(1, {"query": {"image_id": image_id}})
    if text is not None:
        require_text_tower(svc, "text search")
        return JobInput(1, {"query": {"text": text}})
    data = read_image_upload(upload)
    name = upload.filename or "query"
    return JobInput(
        1, {"query": {"source": {"blob": svc.blobs.put(job_id, 0, data), "name": name}}}
    )


def selection_input(svc: Services, job_id: str, req: BaseModel) -> JobInput:
    ids: list[str] | None = getattr(req, "ids", None)
    prefix: str | None = getattr(req, "path_prefix", None)
    if (ids is None) == (prefix is None):
        raise APIError(400, "bad_request", "give either ids or path_prefix")
    if ids is not None:
        return JobInput(len(ids), {"ids": sorted(set(ids))})
    return JobInput(0, {"path_prefix": prefix})  # the writer counts the matches


def collection_input(svc: Services, job_id: str, req: BaseModel) -> JobInput:
    return JobInput(0, {})  # the worker counts the rows


INPUTS: dict[InputKind, Callable[[Services, str, BaseModel], JobInput]] = {
    InputKind.IMAGES: images_input,
    InputKind.FOLDER: folder_input,
    InputKind.QUERY: query_input,
    InputKind.SELECTION: selection_input,
    InputKind.COLLECTION: collection_input,
}
