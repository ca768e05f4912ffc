"""Near-duplicate pairs to groups: union-find, the member to keep, a deterministic order.

Pure functions over arrays, so the rules the API promises are tested without a
stack: groups largest first (ties: the higher best score, then the keep id);
in a group the member to keep has the most pixels, then the larger file, then
the smaller id; members are listed keep first, then by score (cosine to the
keep member) descending, then id.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

# Scores are rounded so that a re-run (other float summation order) orders the same.
SCORE_DECIMALS = 6


@dataclass(frozen=True)
class Images:
    """The images a job compares, sorted by id; ``vectors`` L2-normalised rows."""

    ids: list[str]
    paths: list[str]
    sizes: list[int]
    widths: list[int]
    heights: list[int]
    vectors: NDArray[np.float32]


def normalised(vectors: NDArray[np.float32]) -> NDArray[np.float32]:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    out: NDArray[np.float32] = (vectors / np.where(norms == 0, 1, norms)).astype(np.float32)
    return out


def pairs_of(
    query_ids: Sequence[str],
    hits: Sequence[Sequence[tuple[str, float]]],
    threshold: float,
    known: set[str] | dict[str, int],
) -> list[tuple[str, str]]:
    """The near-duplicate pairs among one batch's neighbours (each pair once, ids ordered).

    Leaves out the query itself and any id not among the job's images (indexed
    after the job read them).
    """
    found: set[tuple[str, str]] = set()
    for query, neighbours in zip(query_ids, hits, strict=True):
        for other, score in neighbours:
            if other != query and score >= threshold and other in known:
                found.add((query, other) if query < other else (other, query))
    return sorted(found)


class UnionFind:
    def __init__(self, size: int) -> None:
        self.parent = list(range(size))

    def find(self, x: int) -> int:
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:  # path compression
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def components(size: int, pairs: Iterable[tuple[int, int]]) -> list[list[int]]:
    """Sets of two or more indices joined by ``pairs`` (transitively)."""
    uf = UnionFind(size)
    for a, b in pairs:
        uf.union(a, b)
    sets: dict[int, list[int]] = {}
    for i in range(size):
        sets.setdefault(uf.find(i), []).append(i)
    return [members for members in sets.values() if len(members) > 1]


def build_groups(images: Images, pairs: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
    """The groups the API serves, sorted as it promises."""
    index = {cid: i for i, cid in enumerate(images.ids)}
    joined = ((index[a], index[b]) for a, b in pairs if a in index and b in index)
    groups = [_group(images, members) for members in components(len(images.ids), joined)]
    groups.sort(key=lambda g: (-g["size"], -_best(g), g["keep"]))
    return groups


def _best(group: dict[str, Any]) -> float:
    scores = [m["score"] for m in group["members"][1:]]
    return max(scores) if scores else 0.0


def _group(images: Images, members: list[int]) -> dict[str, Any]:
    keep = min(
        members,
        key=lambda i: (-images.widths[i] * images.heights[i], -images.sizes[i], images.ids[i]),
    )
    scores = images.vectors[members] @ images.vectors[keep]
    score = {i: round(float(s), SCORE_DECIMALS) for i, s in zip(members, scores, strict=True)}
    score[keep] = 1.0
    others = sorted((i for i in members if i != keep), key=lambda i: (-score[i], images.ids[i]))
    return {
        "size": len(members),
        "keep": images.ids[keep],
        "members": [
            {
                "id": images.ids[i],
                "path": images.paths[i],
                "size": images.sizes[i],
                "width": images.widths[i],
                "height": images.heights[i],
                "score": score[i],
            }
            for i in [keep, *others]
        ],
    }
