"""Files that moved: known content at a new path, its old path gone.

Re-indexing a moved folder finds every file's content stored already (ids are
content hashes), so without this every file was skipped and search and
thumbnails kept showing the old paths. The model worker, which can see the
roots, finds the moves (``moved_files``) and carries them in the staged chunk;
the writer (with Milvus Lite the only one) rewrites the stored path in the
vector store and the catalog (``apply_moves``), with no embedding. Both steps
are idempotent: a re-run writes the same paths again.

A file whose old path still exists is a copy, not a move: it stays skipped and
the stored row keeps the path it had.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence

from visionnet.core.catalog import Catalog
from visionnet.core.pathtext import to_os
from visionnet.workers.base import WorkerContext
from visionnet.workers.vectorstore.staging import StagedChunk

log = logging.getLogger(__name__)


def moved_files(catalog: Catalog, collection: str, found: Mapping[str, str]) -> dict[str, str]:
    """Of stored contents found now (id -> path, text form), those whose recorded path
    is another one that no longer exists: id -> the new path."""
    recorded = catalog.paths(collection, list(found))
    return {
        cid: path
        for cid, path in found.items()
        if (old := recorded.get(cid)) is not None and old != path and not os.path.exists(to_os(old))
    }


def apply_moves(ctx: WorkerContext, chunks: Sequence[StagedChunk]) -> int:
    """Rewrite the stored paths of the moves ``chunks`` carry; returns the rows found."""
    by_collection: dict[str, dict[str, str]] = defaultdict(dict)
    for chunk in chunks:
        by_collection[chunk.collection].update(chunk.moves)
    rewritten = 0
    for collection, moves in by_collection.items():
        if moves:
            rewritten += ctx.store.rewrite_paths(collection, moves, flush=False)
            ctx.catalog.move(collection, moves)
            log.info("collection %s: %d moved file(s), paths updated", collection, len(moves))
    return rewritten
