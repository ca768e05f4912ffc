"""A small typed client of VisionNet's HTTP API, for scripts and for the ``visionnet`` CLI.

It knows the API only (no settings, no worker code), so it works against any
VisionNet, local or remote::

    from visionnet.client import Client
    client = Client("http://127.0.0.1:8000")          # token: VISIONNET_API_TOKEN
    job = client.wait(client.index("/data/photos", collection="photos"))
    print(job["result"]["indexed"])
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any, NoReturn

import requests

FINAL_STATES = frozenset({"succeeded", "failed", "cancelled"})
TOKEN_ENV = "VISIONNET_API_TOKEN"
Job = dict[str, Any]


class APIError(RuntimeError):
    """The API answered with an error: its HTTP status, error name and message."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(f"HTTP {status} {error}: {message}")
        self.status = status
        self.error = error
        self.message = message


class Client:
    def __init__(self, base_url: str, token: str | None = None, timeout_s: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.session = requests.Session()
        token = token if token is not None else os.environ.get(TOKEN_ENV, "")
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    # Submitting: each returns the new job's id at once (202).
    def index(
        self,
        path: str | Path,
        collection: str,
        *,
        classify: bool | None = None,
        labels: Sequence[str] | None = None,
        prompt: str | None = None,
    ) -> str:
        """``classify``: also store each image's top label (default: the server's setting);
        ``labels``: store the best of these words instead (a CLIP embedder)."""
        body: dict[str, Any] = {
            "source": {"path": str(Path(path).resolve())},
            "collection": collection,
        }
        if classify is not None:
            body["classify"] = classify
        if labels:
            body["labels"] = list(labels)
        if prompt is not None:
            body["prompt"] = prompt
        return self._submit("index", json=body)

    def index_archive(
        self, archive: str | Path, collection: str, *, classify: bool | None = None
    ) -> str:
        """Upload a zip or tar of images; the server unpacks it and indexes it like a folder."""
        data = {"collection": collection}
        if classify is not None:
            data["classify"] = "true" if classify else "false"
        return self._submit_files("index", "archive", [archive], data)

    def index_urls(
        self,
        url_list: str | Path,
        collection: str,
        *,
        classify: bool | None = None,
        on_server: bool = False,
    ) -> str:
        """Download and index the images a URL list names (text, one URL a line; CSV or
        Parquet with a ``url`` column). Uploaded, or with ``on_server`` read by the
        workers from that path (under the server's allowed roots)."""
        if on_server:
            body: dict[str, Any] = {
                "source": {"url_list": str(Path(url_list).resolve())},
                "collection": collection,
            }
            if classify is not None:
                body["classify"] = classify
            return self._submit("index", json=body)
        data = {"collection": collection}
        if classify is not None:
            data["classify"] = "true" if classify else "false"
        return self._submit_files("index", "url_list", [url_list], data)

    def classify(
        self,
        images: Sequence[str | Path],
        top_k: int | None = None,
        *,
        labels: Sequence[str] | None = None,
        prompt: str | None = None,
    ) -> str:
        """``labels``: classify against these words instead of the classifier's labels (a
        CLIP embedder; ``prompt`` a template such as ``"a photo of {}"``)."""
        data: dict[str, str | list[str]] = {} if top_k is None else {"top_k": str(top_k)}
        if labels:
            data["labels"] = list(labels)
        if prompt is not None:
            data["prompt"] = prompt
        return self._submit_files("classify", "files", images, data)

    def search(
        self,
        image: str | Path,
        collection: str,
        k: int | None = None,
        filters: Mapping[str, str | int] | None = None,
        *,
        min_score: float | None = None,
        exclude_self: bool = False,
    ) -> str:
        """``filters``: path_prefix, min_width, max_width, min_height, max_height,
        indexed_after, indexed_before (Unix seconds), label. ``min_score``: no hit with
        a lower cosine; ``exclude_self``: leave the query image out if it is indexed."""
        data = _search_form(collection, k, filters, min_score, exclude_self)
        return self._submit_files("search", "image", [image], data)

    def search_many(
        self,
        images: Sequence[str | Path],
        collection: str,
        k: int | None = None,
        filters: Mapping[str, str | int] | None = None,
        *,
        min_score: float | None = None,
        exclude_self: bool = False,
    ) -> str:
        """Several query images uploaded in one job, each with its own hits: read them
        with ``results`` (or ``all_results``)."""
        data = _search_form(collection, k, filters, min_score, exclude_self)
        return self._submit_files("search", "files", images, data)

    def search_folder(
        self,
        folder: str | Path,
        collection: str,
        k: int | None = None,
        filters: Mapping[str, str | int] | None = None,
        *,
        min_score: float | None = None,
        exclude_self: bool = False,
    ) -> str:
        """Every image under a folder the server can read (an allowed root) as a query."""
        query = {"source": {"path": str(Path(folder).resolve())}}
        return self._search_json(query, collection, k, filters, min_score, exclude_self)

    def search_by_id(
        self,
        image_id: str,
        collection: str,
        k: int | None = None,
        filters: Mapping[str, str | int] | None = None,
        *,
        min_score: float | None = None,
        exclude_self: bool = False,
    ) -> str:
        query = {"image_id": image_id}
        return self._search_json(query, collection, k, filters, min_score, exclude_self)

    def search_by_text(
        self,
        text: str,
        collection: str,
        k: int | None = None,
        filters: Mapping[str, str | int] | None = None,
    ) -> str:
        """Text-to-image search: needs a CLIP embedder (``models()["text_search"]``)."""
        return self._search_json({"text": text}, collection, k, filters)

    def _search_json(
        self,
        query: Mapping[str, Any],
        collection: str,
        k: int | None,
        filters: Mapping[str, str | int] | None,
        min_score: float | None = None,
        exclude_self: bool = False,
    ) -> str:
        body: dict[str, Any] = {**query, "collection": collection, **(filters or {})}
        if k is not None:
            body["k"] = k
        if min_score is not None:
            body["min_score"] = min_score
        if exclude_self:
            body["exclude_self"] = True
        return self._submit("search", json=body)

    def results(self, job_id: str, after: int = 0, limit: int = 100) -> dict[str, Any]:
        """One page of a job's result entries (a search of many images), while it runs too."""
        page: dict[str, Any] = self._call(
            "GET", f"/jobs/{job_id}/results", params={"after": after, "limit": limit}
        )
        return page

    def all_results(
        self, job_id: str, *, page: int = 500, poll_s: float = 0.5
    ) -> Iterator[dict[str, Any]]:
        """Every entry of a job, in order, as each batch is found (waits for the job's end)."""
        after = 0
        while True:
            got = self.results(job_id, after, page)
            yield from got["entries"]
            after = got["next"]
            if got["complete"]:
                return
            if not got["entries"]:
                time.sleep(poll_s)

    def delete_images(
        self, collection: str, *, ids: Sequence[str] | None = None, path_prefix: str | None = None
    ) -> str:
        """Delete stored images by id or by path prefix (one of the two): a job."""
        body: dict[str, Any] = {"collection": collection}
        body.update({"ids": list(ids)} if ids is not None else {"path_prefix": path_prefix})
        return self._submit("delete", json=body)

    def export(self, collection: str) -> str:
        """A job that writes the collection to a Parquet file; fetch it with ``download``."""
        return self._submit("export", json={"collection": collection})

    def duplicates(
        self,
        collection: str,
        *,
        threshold: float | None = None,
        path_prefix: str | None = None,
        k: int | None = None,
    ) -> str:
        """A job that groups the collection's near-duplicates (cosine >= ``threshold``);
        read its groups with ``groups`` once it succeeded."""
        body: dict[str, Any] = {"collection": collection}
        given = {"threshold": threshold, "path_prefix": path_prefix, "k": k}
        body.update({name: value for name, value in given.items() if value is not None})
        return self._submit("duplicates", json=body)

    def groups(self, job_id: str, page: int = 1, per_page: int = 200) -> dict[str, Any]:
        """One page of a finished duplicates job's groups (largest first)."""
        params = {"page": page, "per_page": per_page}
        found: dict[str, Any] = self._call("GET", f"/jobs/{job_id}/groups", params=params)
        return found

    def all_groups(self, job_id: str, per_page: int = 200) -> Iterator[dict[str, Any]]:
        """Every group of a finished duplicates job, a page at a time."""
        page = 1
        while True:
            found = self.groups(job_id, page, per_page)
            yield from found["groups"]
            if page * per_page >= found["total"] or not found["groups"]:
                return
            page += 1

    def download(self, job_id: str, out: str | Path, chunk_bytes: int = 1 << 20) -> int:
        """Stream a finished export job's file to ``out``; the bytes written."""
        url = f"{self.base_url}/api/v1/jobs/{job_id}/export"
        with self.session.get(url, stream=True, timeout=self.timeout_s) as r:
            if r.status_code >= 400:
                self._raise(r)
            written = 0
            with open(out, "wb") as fh:
                for block in r.iter_content(chunk_bytes):
                    written += fh.write(block)
        return written

    def image(self, image_id: str, collection: str | None = None) -> dict[str, Any]:
        """What is stored about one image: path, size, width, height, indexed time, label."""
        params = {"collection": collection} if collection else {}
        found: dict[str, Any] = self._call("GET", f"/images/{image_id}", params=params)
        return found

    # Watching and managing jobs.
    def job(self, job_id: str) -> Job:
        job: Job = self._call("GET", f"/jobs/{job_id}")
        return job

    def jobs(
        self,
        *,
        type: str | None = None,
        state: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        params = {"type": type, "state": state, "limit": limit, "cursor": cursor}
        page: dict[str, Any] = self._call(
            "GET", "/jobs", params={k: v for k, v in params.items() if v}
        )
        return page

    def cancel(self, job_id: str) -> Job:
        job: Job = self._call("POST", f"/jobs/{job_id}/cancel")
        return job

    def retry(self, job_id: str) -> dict[str, Any]:
        """A new index job over the failed files of a finished one: its id and what it retries."""
        accepted: dict[str, Any] = self._call("POST", f"/jobs/{job_id}/retry")
        return accepted

    def delete(self, job_id: str) -> None:
        self._call("DELETE", f"/jobs/{job_id}")

    def collections(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._call("GET", "/collections")["collections"]
        return found

    def drop_collection(self, name: str) -> dict[str, Any]:
        """Ask the writer to drop ``name`` and its vectors (done shortly after)."""
        entry: dict[str, Any] = self._call("DELETE", f"/collections/{name}")
        return entry

    def models(self) -> dict[str, Any]:
        """The classifier and embedder the workers loaded, and whether text search works."""
        found: dict[str, Any] = self._call("GET", "/models")
        return found

    def health(self) -> dict[str, Any]:
        r = self.session.get(f"{self.base_url}/api/v1/health", timeout=self.timeout_s)
        body: dict[str, Any] = r.json()
        return body

    def wait(
        self,
        job_id: str,
        *,
        poll_s: float = 0.5,
        timeout_s: float | None = None,
        on_progress: Callable[[Job], None] | None = None,
    ) -> Job:
        """Poll until the job is final; ``on_progress`` sees every poll."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        delay = min(0.05, poll_s)
        while True:
            job = self.job(job_id)
            if on_progress is not None:
                on_progress(job)
            if job["state"] in FINAL_STATES:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['state']} after {timeout_s} s")
            time.sleep(delay)
            delay = min(delay * 2, poll_s)

    def _submit(self, endpoint: str, **kw: Any) -> str:
        return str(self._call("POST", f"/{endpoint}", **kw)["job_id"])

    def _submit_files(
        self,
        endpoint: str,
        field: str,
        paths: Sequence[str | Path],
        data: Mapping[str, str | list[str]],
    ) -> str:
        with ExitStack() as stack:
            files = [(field, (Path(p).name, stack.enter_context(open(p, "rb")))) for p in paths]
            return self._submit(endpoint, files=files, data=data)

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        r = self.session.request(
            method, f"{self.base_url}/api/v1{path}", timeout=self.timeout_s, **kw
        )
        if r.status_code >= 400:
            self._raise(r)
        return r.json() if r.content else None

    @staticmethod
    def _raise(r: requests.Response) -> NoReturn:
        try:
            body = r.json()
        except ValueError:
            raise APIError(r.status_code, "error", r.text[:500]) from None
        raise APIError(r.status_code, body.get("error", "error"), body.get("message", ""))


def _search_form(
    collection: str,
    k: int | None,
    filters: Mapping[str, str | int] | None,
    min_score: float | None,
    exclude_self: bool,
) -> dict[str, str | list[str]]:
    data: dict[str, str | list[str]] = {"collection": collection}
    if k is not None:
        data["k"] = str(k)
    data.update({name: str(value) for name, value in (filters or {}).items()})
    if min_score is not None:
        data["min_score"] = str(min_score)
    if exclude_self:
        data["exclude_self"] = "true"
    return data
