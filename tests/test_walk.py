"""The planner's walk resumes exactly where it stopped, in any tree."""

from __future__ import annotations

import random
from pathlib import Path

from visionnet.workers.model_worker.walk import iter_images


def test_a_walk_resumed_after_any_file_yields_exactly_the_rest(tmp_path: Path) -> None:
    rng = random.Random(1)
    dirs = [tmp_path]
    for i in range(30):  # nested folders whose names sort before and after file names
        sub = rng.choice(dirs) / f"{rng.choice(['a', 'b', 'z', 'm', '0'])}{i}"
        sub.mkdir()
        dirs.append(sub)
    for i in range(300):
        (rng.choice(dirs) / f"{rng.choice('azm0')}{i}.jpg").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("not an image")
    full = list(iter_images(tmp_path, [".jpg"]))
    assert len(full) == len(set(full)) == 300
    for cut, path in enumerate(full):
        assert list(iter_images(tmp_path, [".jpg"], after=path)) == full[cut + 1 :]


def test_a_bounded_walk_yields_the_same_first_paths(tmp_path: Path) -> None:
    rng = random.Random(2)
    flat = tmp_path / "flat"
    flat.mkdir()
    names = [f"{rng.randrange(10**9):09d}.jpg" for _ in range(5000)]
    for name in set(names):
        (flat / name).write_bytes(b"")
    (flat / "deeper").mkdir()
    (flat / "deeper" / "x.jpg").write_bytes(b"")
    full = list(iter_images(tmp_path, [".jpg"]))
    assert full[-1].endswith("deeper/x.jpg") and full[:-1] == sorted(full[:-1])
    # A planner's steps of 700: each bounded walk resumes after the last path.
    stepped: list[str] = []
    after = None
    while True:
        step = list(iter_images(tmp_path, [".JPG"], after=after, limit=700))
        assert len(step) <= 700
        stepped += step
        if len(step) < 700:
            break
        after = step[-1]
    assert stepped == full
