"""Index job, model worker side: plan (walk and chunk) -> per chunk embed -> hand to the writer.

Each chunk is a chain: ``embed_chunk`` here (queue ``bulk``) stages the
chunk's vectors in Redis (``visionnet.workers.vectorstore.staging``), then
``write_chunk`` in the store writer (queue ``store``,
``visionnet.workers.store_writer.write_chunk``) commits it, grouped with
whatever else is staged.

Stages are chained, never awaited: the planner only enqueues, each chunk's
writer reports its counts to the job record, and the report that completes
the last chunk finishes the job. Writes are idempotent (content-hash ids,
upserts, a chunk counted once), so these tasks ack late and may be redelivered.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from celery import shared_task

from visionnet.core.datafiles import listings_path, sweep, url_list_path
from visionnet.core.jobs import ChunkReport, JobState, is_retryable
from visionnet.core.jobtypes import IndexParams, job_type
from visionnet.core.jobtypes import label_texts as prompted
from visionnet.core.paths import PathNotAllowedError, resolve_allowed
from visionnet.core.pathtext import to_os, to_text
from visionnet.core.queues import EMBED_CHUNK, WRITE_CHUNK
from visionnet.core.urllists import UrlListError
from visionnet.workers.commit import commit_chunks
from visionnet.workers.model_worker.archives import ArchiveError, unpack
from visionnet.workers.model_worker.chunk_failure import settle_embed_failure, split_or_fail
from visionnet.workers.model_worker.chunk_mapper import ChunkMapper
from visionnet.workers.model_worker.chunk_reader import ChunkReader, Picture
from visionnet.workers.model_worker.chunk_sink import ChunkSink
from visionnet.workers.model_worker.context import ModelContext, ModelTask
from visionnet.workers.model_worker.listing import ListingSpill
from visionnet.workers.model_worker.stored import stored_contents
from visionnet.workers.model_worker.url_plan import Enqueue, plan_step, prepare, read_step
from visionnet.workers.model_worker.url_reader import UrlChunkReader
from visionnet.workers.model_worker.walk import WalkNotes, chunked, iter_images
from visionnet.workers.models.agreement import may_mix
from visionnet.workers.models.embedder import TextSearchUnavailableError
from visionnet.workers.models.loading import ModelUnavailableError
from visionnet.workers.models.text_labels import WordLabeller
from visionnet.workers.moves import moved_files
from visionnet.workers.vectorstore.staging import StagedChunk

log = logging.getLogger(__name__)


@shared_task(name=job_type("index").task, base=ModelTask, bind=True, acks_late=True)
def plan_index(
    self: ModelTask,
    *,
    job_id: str,
    root: str,
    params: dict[str, Any],
    paths: list[str] | None = None,
    after: str | None = None,
    next_chunk: int = 0,
    archive: str | None = None,
    urls: bool = False,
    url_list: str | None = None,
    url_upload: str | None = None,
    list_offset: int = 0,
) -> None:
    """Walk ``root`` (or take ``paths``: a retry) and enqueue chunks, a step at a time.

    Each step enqueues at most ``jobs.plan_ahead_chunks`` chunks and then itself
    again, behind them, to go on from the last file (``after``). So a job of a
    million files never has more than a step of chunks queued: other jobs'
    chunks interleave with its own, a cancel stops the walk at the next step, and
    the planner never holds the whole listing.

    ``archive``: an uploaded archive to unpack into ``root`` first; its refused
    entries are chunk 0's failures, and the walk's chunks count from 1.

    Paths (``root``, ``paths``, ``after`` and those in chunk messages) are in
    their text form (visionnet.core.pathtext): a name that is not UTF-8 is
    indexed under it. Folders the walk cannot read are the job's errors, files
    it leaves out for their extension its ``skipped_ext:*`` counts; a root
    that cannot be read fails the job.

    A URL list (``url_list``: a path under the roots; ``url_upload``: an uploaded
    list) is read once and chunked from ``list_offset`` (url_plan.py); ``urls``:
    ``paths`` are URLs (a retry of a URL-list job's failures).
    """
    index_params = IndexParams.model_validate(params)
    collection = index_params.collection
    ctx = self.ctx
    classify = (
        ctx.settings.jobs.classify_while_indexing
        if index_params.classify is None
        else index_params.classify
    )
    settings = ctx.settings
    words = _word_labels(index_params, settings.jobs.index_labels, settings.jobs.index_label_prompt)
    if words is not None:
        classify = False  # labels from words fill the stored label instead
    # Sorted listings of folders larger than a step, kept for this walk's later steps.
    spill = ListingSpill(listings_path(settings, job_id))
    if next_chunk == 0:
        sweep(spill.where.parent, settings.result_ttl_s)  # walks that never ended
    started = ctx.jobs.start(job_id) if next_chunk == 0 else ctx.jobs.is_active(job_id)
    if not started:
        spill.remove()
        return  # cancelled (or expired): no more walking
    if words is not None and next_chunk == 0 and not _reads_text(self, job_id):
        spill.remove()
        return
    if archive is not None and next_chunk == 0:
        if not _unpack_upload(self, job_id, Path(archive), Path(root)):
            return
        next_chunk = 1
    if url_list is not None or url_upload is not None:
        _plan_url_list(
            self,
            job_id,
            params,
            (url_list, url_upload),
            list_offset,
            next_chunk,
            lambda n, urls, ids: _enqueue_chunk(
                self, job_id, n, urls, collection, classify, words, urls=True, ids=ids
            ),
        )
        return
    step = settings.jobs.plan_ahead_chunks
    files: Iterator[str]
    notes = WalkNotes()
    if paths is not None:
        files = iter(paths[paths.index(after) + 1 :] if after else paths)
    else:
        # One file more than a step takes: it tells the step that more follow.
        wanted = step * settings.jobs.chunk_size + 1
        walked = iter_images(
            Path(to_os(root)),
            settings.jobs.extensions,
            after=to_os(after) if after else None,
            limit=wanted,
            spill=spill,
            notes=notes,
        )
        files = (to_text(path) for path in walked)
    last: str | None = None
    for offset, chunk in enumerate(chunked(files, settings.jobs.chunk_size)):
        if offset == step:
            _record_walk(ctx, job_id, notes)  # before the step that could end the job
            # More to walk: the next step waits behind the chunks just queued.
            self.app.signature(
                job_type("index").task,
                kwargs={
                    "job_id": job_id,
                    "root": root,
                    "params": params,
                    "paths": paths,
                    "after": last,
                    "next_chunk": next_chunk + offset,
                    "urls": urls,
                },
            ).apply_async()
            return
        _enqueue_chunk(
            self, job_id, next_chunk + offset, chunk, collection, classify, words, urls=urls
        )
        last = chunk[-1]
    spill.remove()
    if str(Path(to_os(root))) in notes.unreadable:
        # The source itself is gone or unreadable: a job-level cause.
        reason = notes.unreadable[str(Path(to_os(root)))]
        ctx.jobs.transition(job_id, JobState.FAILED, error=f"{reason} ({root})")
        return
    _record_walk(ctx, job_id, notes)
    ctx.jobs.finish_planning(job_id)


def _plan_url_list(
    task: ModelTask,
    job_id: str,
    params: dict[str, Any],
    source: tuple[str | None, str | None],
    offset: int,
    next_chunk: int,
    enqueue: Enqueue,
) -> None:
    """One step over a URL list: read it first (the first step), then queue the next
    chunks and, behind them, the next step from the offset after them."""
    ctx = task.ctx
    settings = ctx.settings
    url_list, url_upload = source
    target = url_list_path(settings, job_id)
    if next_chunk == 0 and offset == 0:
        sweep(target.parent, settings.result_ttl_s)  # lists of jobs whose planner died
        try:
            where = (
                Path(url_upload)
                if url_upload is not None
                else resolve_allowed(to_os(url_list or ""), settings.readable_roots)
            )
            total = prepare(where, target, settings.jobs.max_list_urls)
        except (UrlListError, PathNotAllowedError) as exc:
            ctx.jobs.transition(job_id, JobState.FAILED, error=f"URL list refused: {exc}")
            return
        finally:
            if url_upload is not None and target.is_file():
                Path(url_upload).unlink(missing_ok=True)
        log.info("job %s: a URL list of %d entries", job_id, total)
    try:
        step = read_step(target, offset, settings.jobs.chunk_size, settings.jobs.plan_ahead_chunks)
    except FileNotFoundError:
        # Its last step ran before (a redelivered step after the list was done).
        log.info("job %s: URL list read to its end already", job_id)
        return
    following = plan_step(step, next_chunk, enqueue)
    if step.next_offset is not None:
        task.app.signature(
            job_type("index").task,
            kwargs={
                "job_id": job_id,
                "root": "",
                "params": params,
                "url_list": url_list,
                "url_upload": url_upload,
                "list_offset": step.next_offset,
                "next_chunk": following,
            },
        ).apply_async()
        return
    target.unlink(missing_ok=True)
    ctx.jobs.finish_planning(job_id)


def _word_labels(
    params: IndexParams, default_labels: list[str], default_prompt: str
) -> tuple[list[str], list[str]] | None:
    """(labels, the texts the text tower reads) when the job stores labels from words."""
    if params.labels:
        return params.labels, prompted(params.labels, params.prompt)
    if default_labels and params.classify is None:
        return default_labels, prompted(default_labels, params.prompt or default_prompt)
    return None


def _reads_text(task: ModelTask, job_id: str) -> bool:
    """Labels from words need the embedder's text tower: else the job fails, saying so."""
    ctx = task.ctx
    try:
        embedder = ctx.embedder()
    except ModelUnavailableError as exc:
        ctx.jobs.transition(job_id, JobState.FAILED, error=str(exc))
        return False
    if embedder.info.get("text_search"):
        return True
    ctx.jobs.transition(
        job_id,
        JobState.FAILED,
        error=f"labels from words need a CLIP embedder with a text tower; the embedder "
        f"{embedder.name} ({embedder.info.get('model_type')}) has none (labels given, or "
        "the jobs.index_labels setting)",
    )
    return False


def _record_walk(ctx: Any, job_id: str, notes: WalkNotes) -> None:
    """The step's unreadable folders and skipped files into the job's record (counted
    once per folder, so a redelivered or overlapping step adds nothing)."""
    if not notes:
        return
    errors = [{"path": to_text(p), "error": why} for p, why in sorted(notes.unreadable.items())]
    skipped = {to_text(p): dict(counts) for p, counts in notes.skipped.items()}
    ctx.jobs.record_walk(job_id, errors, skipped)


def _unpack_upload(task: ModelTask, job_id: str, upload: Path, root: Path) -> bool:
    """Unpack the job's uploaded archive once; False if it is refused (the job failed)."""
    ctx = task.ctx
    jobs = ctx.settings.jobs
    if not jobs.keep_archives:
        sweep(root.parent, ctx.settings.result_ttl_s)
    sweep(upload.parent, ctx.settings.result_ttl_s)
    if not upload.exists():
        return True  # a redelivered planner: unpacked and counted already
    try:
        unpacked = unpack(
            upload,
            root,
            max_bytes=jobs.archive_max_unpacked_bytes,
            max_entries=jobs.archive_max_entries,
        )
    except ArchiveError as exc:
        upload.unlink(missing_ok=True)
        ctx.jobs.transition(job_id, JobState.FAILED, error=str(exc))
        return False
    log.info(
        "job %s: unpacked %d files (%d bytes), refused %d entries",
        job_id,
        unpacked.files,
        unpacked.bytes,
        len(unpacked.refused),
    )
    if unpacked.refused:
        refused = len(unpacked.refused)
        ctx.jobs.plan_chunk(job_id, 0, refused)
        ctx.jobs.record_chunk(job_id, ChunkReport(0, 0, 0, refused, unpacked.refused))
    upload.unlink(missing_ok=True)
    return True


def _enqueue_chunk(
    task: ModelTask,
    job_id: str,
    chunk_no: int,
    paths: list[str],
    collection: str,
    classify: bool,
    words: tuple[list[str], list[str]] | None = None,
    *,
    urls: bool = False,
    ids: dict[str, str] | None = None,
) -> None:
    # Count the chunk (once, however often the planner runs) before it can report back.
    task.ctx.jobs.plan_chunk(job_id, chunk_no, len(paths))
    kwargs: dict[str, Any] = {
        "job_id": job_id,
        "chunk_no": chunk_no,
        "paths": paths,
        "collection": collection,
        "classify": classify,
    }
    if urls:
        kwargs["urls"] = True
        if ids:
            kwargs["ids"] = ids
    if words is not None:
        kwargs["labels"], kwargs["label_texts"] = words
    embed = task.app.signature(EMBED_CHUNK, kwargs=kwargs)
    if task.ctx.settings.milvus.direct_writes:
        embed.apply_async()  # a real Milvus server: the model worker writes itself
        return
    write = task.app.signature(
        WRITE_CHUNK,
        kwargs={"job_id": job_id, "chunk_no": chunk_no, "collection": collection},
    )
    (embed | write).apply_async()


class EmbedChunkTask(ModelTask):
    """A chunk that cannot be completed fails its own files, never the job (chunk_failure)."""

    # A hard time limit hands the message back (not acked): redelivered, the
    # chunk reaches the delivery cap and is split like any chunk that kills its process.
    acks_on_failure_or_timeout = False

    def give_up(self, reason: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The model worker died on this chunk every time: split it, or fail its one file."""
        return split_or_fail(self, kwargs, reason)

    def settle_failure(self, exc: BaseException, kwargs: dict[str, Any]) -> None:
        settle_embed_failure(self, exc, kwargs)


@shared_task(name=EMBED_CHUNK, base=EmbedChunkTask, bind=True, acks_late=True)
def embed_chunk(
    self: EmbedChunkTask,
    *,
    job_id: str,
    chunk_no: int,
    paths: list[str],
    collection: str,
    classify: bool = False,
    labels: list[str] | None = None,
    label_texts: list[str] | None = None,
    urls: bool = False,
    ids: dict[str, str] | None = None,
) -> bool:
    """Embed one chunk and stage it for the writer; True when there is something to write.

    Three stages, each its own class: the reader (chunk_reader.py: every file
    read, decoded and preprocessed inside the per-file guard), the mapper
    (chunk_mapper.py: the forward passes) and the sink (chunk_sink.py: staged
    or committed). ``paths`` are in their text form (visionnet.core.pathtext).
    ``labels``: labels from words, stored as each image's label; ``label_texts``
    (the labels in their prompt) go through the text tower once per chunk.
    ``urls``: ``paths`` are URLs, downloaded in the read stage (url_reader.py);
    ``ids``: their ids from the list, given back with their errors.
    """
    ctx = self.ctx
    if not ctx.jobs.is_active(job_id):
        return False
    try:
        embedder = ctx.embedder()
        classifier = ctx.classifier() if classify else None
        labeller = WordLabeller.build(embedder, labels, label_texts or labels) if labels else None
    except (ModelUnavailableError, TextSearchUnavailableError) as exc:
        ctx.jobs.transition(job_id, JobState.FAILED, error=str(exc))
        return False
    settings = ctx.settings
    mapper = ChunkMapper(
        embedder,
        classifier,
        classifier is not None and ctx.one_pass(),
        ctx.pass_pool,
        ctx.passes_at_once,
        labeller,
    )
    reader = ChunkReader(
        ctx.reader_pool,
        settings.readable_roots,
        settings.jobs.max_file_bytes,
        embedder.input_size,
        mapper.runner.prepare_ahead,
    )
    timings: dict[str, float] = {}
    errors: list[dict[str, Any]] = []

    # Stage 1, in the reader threads: read and hash every file of the chunk.
    # "read" is the stage's wall time; "hash", "decode" and "preprocess" are the
    # reader threads' seconds, summed (they overlap each other and the passes).
    start = time.perf_counter()
    if urls:
        read, timings["download"] = _url_reader(ctx).read(paths)
    else:
        read = reader.read(paths)
    errors.extend(e.as_dict() for e in read.errors)
    timings["hash"] = read.hash_s
    timings["read"] = time.perf_counter() - start

    # Stage 2: skip what the collection holds already (no decode, no forward pass).
    start = time.perf_counter()
    stored = stored_contents(ctx.catalog, ctx.store, collection, list(read.fresh))
    todo = [(cid, raw) for cid, raw in read.fresh.items() if cid not in stored]
    known = {cid: raw.name for cid, raw in read.fresh.items() if cid in stored}
    # A URL's content stored already keeps its stored path (a URL is never "moved").
    moves = {} if urls else moved_files(ctx.catalog, collection, known)
    timings["lookup"] = time.perf_counter() - start

    # Stage 3: the reader threads decode and preprocess batch n+1 while the model
    # runs batch n.
    batch_size = settings.models.batch_size
    batches = [todo[b : b + batch_size] for b in range(0, len(todo), batch_size)]
    pictures: list[Picture] = []
    timings["decode"] = timings["preprocess"] = timings["decode_wait"] = timings["embed"] = 0.0
    for batch, waited in reader.decode_ahead(batches, mapper.lanes):
        timings["decode_wait"] += waited
        timings["decode"] += batch.decode_s
        timings["preprocess"] += batch.preprocess_s
        errors.extend(e.as_dict() for e in batch.errors)
        if batch.pictures:
            pictures.extend(batch.pictures)
            mapper.submit(batch.prepared, [p.image for p in batch.pictures])
    mapped = mapper.finish()
    timings["embed"] = mapped.embed_s
    if mapper.classifies_apart:
        timings["classify"] = mapped.classify_s
    if urls:
        _mark_url_errors(errors, ids or {})

    chunk = StagedChunk(
        job_id=job_id,
        chunk_no=chunk_no,
        collection=collection,
        ids=[p.content_id for p in pictures],
        paths=[p.raw.name for p in pictures],
        sizes=[len(p.raw.data) for p in pictures],
        vectors=mapped.matrix(),
        model=embedder.name,
        skipped=len(paths) - len(errors) - len(pictures),
        errors=errors,
        timings={k: round(v, 4) for k, v in timings.items()},
        worker=self.request.hostname or "",
        widths=[p.width for p in pictures],
        heights=[p.height for p in pictures],
        labels=mapped.labels,
        label_scores=mapped.label_scores,
        moves=moves,
        # Where the vectors came from: a collection refuses another runtime/precision's.
        provenance=embedder.choice.label,
        may_mix=may_mix(
            embedder.choice.label, embedder.agreement, settings.models.allow_mixed_vectors
        ),
    )
    m = settings.milvus
    sink = ChunkSink(
        direct=m.direct_writes,
        commit=lambda chunks: commit_chunks(ctx, chunks),
        staging=ctx.staging,
        max_staged=m.max_staged_chunks,
        still_active=lambda: ctx.jobs.is_active(job_id),
        max_wait_s=settings.jobs.redelivery_timeout_s / 2,
    )
    to_write = sink.deliver(chunk)
    log.info(
        "job %s chunk %d: %d files, %d embedded, %d already stored, %d errors; %s",
        job_id,
        chunk_no,
        len(paths),
        len(pictures),
        len(stored),
        len(errors),
        " ".join(f"{k}={v:.3f}s" for k, v in chunk.timings.items()),
    )
    return to_write


def _url_reader(ctx: ModelContext) -> UrlChunkReader:
    sources = ctx.settings.sources
    return UrlChunkReader(
        ctx.fetcher,
        ctx.reader_pool,
        ctx.settings.data_path,
        sources.thumbnail_size,
        sources.keep_downloads,
    )


def _mark_url_errors(errors: list[dict[str, Any]], ids: dict[str, str]) -> None:
    """Each URL's error says whether a retry runs it again (a download's own say, else
    from its words: not an image is for good), and carries the URL's id from the list."""
    for error in errors:
        error["retryable"] = is_retryable(error)
        if error["path"] in ids:
            error["id"] = ids[error["path"]]
