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
