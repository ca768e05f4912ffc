"""Which of an index chunk's contents its collection holds already: those are not
decoded or embedded again.

Advisory only: the store writer decides which rows are new (``commit_chunks``
asks the store itself), so a content taken here as not stored is at worst
embedded again and counted there as skipped; the job's counts stay exact.

The catalog answers first, in one Redis call per 4,096 ids. A content it does
not list is taken as not stored: the writer records a row there after the store
took it, so that misses only rows a crash cut off between the two, or rows of a
Redis that lost its data (``visionnet catalog-rebuild``); both are embedded
again, not lost. Contents it lists are confirmed in the store, since a delete
removes a row from the store before the catalog. So the chunks of a new
collection never query the store: that query held the passes of every 256-file
chunk for about 8 ms (0.030 against 0.002 ms per file; ``bench/RESULTS.md``,
"The per-file cost of the index path").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from visionnet.core.catalog import Catalog


class StoredIds(Protocol):
    def existing_ids(self, name: str, ids: Sequence[str]) -> set[str]: ...


def stored_contents(
    catalog: Catalog, store: StoredIds, collection: str, ids: Sequence[str]
) -> set[str]:
    """Of ``ids``, those the catalog lists and the store holds."""
    listed = catalog.listed(collection, ids)
    return store.existing_ids(collection, listed) if listed else set()
