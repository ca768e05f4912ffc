"""What each collection holds, kept in Redis beside the job records.

The web never opens the vector store, so the collection list it serves comes
from here: the writer (the store writer, or a model worker writing directly)
records a collection when it creates it; its count is the number of images
in the catalog (``visionnet.core.catalog``), which the writer keeps with every
commit and delete. Dropping a collection is a task for the writer, and the
entry goes with it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from visionnet.core.catalog import Catalog

PREFIX = "visionnet:collection:"
INDEX = "visionnet:collections"

# KEYS: the entry. Marks it only where it exists; 1 if marked.
_MARK_DELETING = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'state', 'deleting')
return 1
"""


class CollectionRegistry:
    def __init__(self, client: Any) -> None:
        self._r = client  # decode_responses=True

    def created(self, name: str, model: str, dim: int, vectors: Sequence[str] = ()) -> None:
        """Record a collection the writer made (or found); keeps the first creation time.

        ``vectors``: the runtime/precision labels its vectors came from, as the store
        records them (e.g. "torch/bf16"); empty: not known, the entry keeps what it has.
        """
        key = PREFIX + name
        pipe = self._r.pipeline()
        pipe.hsetnx(key, "created_at", str(time.time()))
        fields: dict[str, Any] = {"name": name, "model": model, "dim": dim}
        if vectors:
            fields["vectors"] = ",".join(vectors)
        pipe.hset(key, mapping=fields)
        pipe.sadd(INDEX, name)
        pipe.execute()

    def get(self, name: str) -> dict[str, Any] | None:
        raw: dict[str, str] = self._r.hgetall(PREFIX + name)
        if not raw:
            return None
        return {
            "name": raw["name"],
            "count": Catalog(self._r).count(name),
            "model": raw.get("model", ""),
            "dim": int(raw.get("dim", 0)),
            "vectors": [v for v in raw.get("vectors", "").split(",") if v],
            "created_at": float(raw.get("created_at", 0)),
            "state": raw.get("state", "ready"),
        }

    def all(self) -> list[dict[str, Any]]:
        names = sorted(self._r.smembers(INDEX))
        found = [self.get(n) for n in names]
        return [c for c in found if c is not None]

    def mark_deleting(self, name: str) -> dict[str, Any] | None:
        """Mark a known collection as being deleted; its entry, or None if unknown.

        One atomic step: a drop that forgets the entry meanwhile leaves nothing
        behind (a separate check and write would re-create a bare hash).
        """
        if not int(self._r.eval(_MARK_DELETING, 1, PREFIX + name)):
            return None
        return self.get(name)

    def unmark_deleting(self, name: str) -> None:
        """Undo ``mark_deleting`` whose drop task could not be sent: visible again.

        Never re-creates an entry (HDEL on a gone key does nothing), so it is
        harmless where the drop was delivered after all and forgot the entry.
        """
        self._r.hdel(PREFIX + name, "state")

    def forget(self, name: str) -> None:
        pipe = self._r.pipeline()
        pipe.delete(PREFIX + name)
        pipe.srem(INDEX, name)
        pipe.execute()
