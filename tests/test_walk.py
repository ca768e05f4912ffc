"""The planner's walk resumes exactly where it stopped, in any tree."""

from __future__ import annotations

import bisect
import os
import random
from pathlib import Path
from typing import Any

import pytest

from visionnet.workers.model_worker.listing import Listing, ListingSpill
from visionnet.workers.model_worker.walk import WalkNotes, iter_images


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


def _stepped(root: Path, size: int, spill: ListingSpill | None) -> list[list[str]]:
    """A planner's walk: steps of ``size`` paths, each resumed after the last."""
    steps: list[list[str]] = []
    after = None
    while True:
        step = list(iter_images(root, [".jpg"], after=after, limit=size, spill=spill))
        steps.append(step)
        if len(step) < size:
            return steps
        after = step[-1]


def test_a_large_folder_is_listed_once_for_the_steps_after_the_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(3)
    root = tmp_path / "root"
    flat = root / "flat"
    flat.mkdir(parents=True)
    odd = ["é.jpg", "b\udcff.jpg", " lead.jpg", "z" * 200 + ".jpg"]  # non-UTF-8 bytes too
    for name in {f"{rng.randrange(10**9):09d}.jpg" for _ in range(2500)} | set(odd):
        (flat / name).write_bytes(b"")
    (flat / "a_sub").mkdir()
    (flat / "a_sub" / "x.jpg").write_bytes(b"")
    (root / "0first.jpg").write_bytes(b"")
    full = list(iter_images(root, [".jpg"]))
    reads: list[str] = []
    real_scandir = os.scandir

    def counting(path: str) -> Any:
        reads.append(os.path.basename(path) if isinstance(path, str) else "")
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", counting)
    spill = ListingSpill(tmp_path / "listings" / "job", run_names=700)  # 4 runs merged
    steps = _stepped(root, 300, spill)
    assert [p for step in steps for p in step] == full
    assert len(steps) > 8
    # The first step and the second (which lists it) read the folder; no other does.
    assert reads.count("flat") == 2
    assert len(list(spill.where.glob("*.names"))) == 1
    assert not list(spill.where.glob("*.run*"))  # the sorted runs were merged and removed
    spill.remove()
    assert not spill.where.exists()


def test_a_folder_that_changes_mid_walk_is_listed_again(tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    write = [flat / f"{i:05d}.jpg" for i in range(0, 2000, 2)]
    flat.mkdir()
    for path in write:
        path.write_bytes(b"")
    spill = ListingSpill(tmp_path / "listings")
    first = list(iter_images(flat, [".jpg"], limit=300, spill=spill))
    second = list(iter_images(flat, [".jpg"], after=first[-1], limit=300, spill=spill))
    assert second[0] == str(flat / "00600.jpg")
    (flat / "01999.jpg").write_bytes(b"")  # after the mark: a direct read would see it
    (flat / "00001.jpg").write_bytes(b"")  # before it: no walk goes back
    os.utime(flat, ns=(0, 10**18))  # a distinct mtime even on a coarse clock
    rest = list(iter_images(flat, [".jpg"], after=second[-1], spill=spill, limit=10**6))
    assert str(flat / "01999.jpg") in rest and str(flat / "00001.jpg") not in rest
    assert first + second + rest == sorted(first + second + rest)
    assert len(first + second + rest) == 1001
    assert len(list(spill.where.glob("*.names"))) == 1  # the old listing was dropped


def test_a_name_with_a_newline_is_walked_without_a_listing(tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(500):
        (flat / f"{i:04d}.jpg").write_bytes(b"")
    (flat / "0250\nx.jpg").write_bytes(b"")
    spill = ListingSpill(tmp_path / "listings")
    steps = _stepped(flat, 100, spill)
    assert [p for step in steps for p in step] == list(iter_images(flat, [".jpg"]))
    assert not list(spill.where.glob("*.names"))


def test_the_bisection_finds_the_first_name_after_any_probe(tmp_path: Path) -> None:
    rng = random.Random(4)
    names = sorted({"".join(rng.choices("abcé\udcfe", k=rng.randrange(1, 9))) for _ in range(300)})
    path = tmp_path / "names"
    path.write_bytes(b"".join(os.fsencode(n) + b"\n" for n in names))
    listing = Listing([], files=path)
    probes = [*names, "", "zzz", *("".join(rng.choices("abcé", k=3)) for _ in range(200))]
    for probe in probes:
        want = names[bisect.bisect_right(names, probe) :]
        assert list(listing.names_after(probe)) == want
        assert list(Listing([], names=names).names_after(probe)) == want


def _noted_steps(root: Path, step: int, spill: ListingSpill | None, notes: WalkNotes) -> list[str]:
    """A walk in steps of ``step`` paths and one look-ahead, as the planner runs it."""
    out: list[str] = []
    after: str | None = None
    while True:
        got = list(
            iter_images(root, [".jpg"], after=after, limit=step + 1, spill=spill, notes=notes)
        )
        out.extend(got[:step])
        if len(got) <= step:
            return out
        after = got[step - 1]


def test_files_left_out_for_their_extension_are_noted_per_folder(tmp_path: Path) -> None:
    rng = random.Random(3)
    dirs = [tmp_path]
    for i in range(12):
        sub = rng.choice(dirs) / f"d{i}"
        sub.mkdir()
        dirs.append(sub)
    expected: dict[str, dict[str, int]] = {}
    for i in range(200):
        folder = rng.choice(dirs)
        ext = rng.choice([".jpg", ".jpg", ".txt", ".cr2", ""])
        (folder / f"f{i}{ext}").write_bytes(b"x")
        if ext != ".jpg":
            counts = expected.setdefault(str(folder), {})
            counts[ext or "(none)"] = counts.get(ext or "(none)", 0) + 1
    (tmp_path / "to_a_folder").symlink_to(dirs[1])  # a link to a folder is no skipped file
    os.mkfifo(tmp_path / "pipe.txt")  # nor is a FIFO
    whole = WalkNotes()
    full = list(iter_images(tmp_path, [".jpg"], notes=whole))
    assert {k: dict(v) for k, v in whole.skipped.items()} == expected
    assert not whole.unreadable
    # In steps (re-reading folders, a look-ahead into the next one), each folder's
    # count is the same: noted when it is read from its start.
    for step, spill in [(7, None), (5, ListingSpill(tmp_path.parent / "spill", run_names=4))]:
        notes = WalkNotes()
        assert _noted_steps(tmp_path, step, spill, notes) == full
        assert {k: dict(v) for k, v in notes.skipped.items()} == expected


def test_a_folder_that_cannot_be_read_is_noted_with_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The tests run as root, whom permission bits do not stop: the refusal is raised.
    for name in ("a", "locked", "z"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "1.jpg").write_bytes(b"x")
    locked = str(tmp_path / "locked")
    real_scandir = os.scandir

    def scandir(path: Any) -> Any:
        if str(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    notes = WalkNotes()
    walked = list(iter_images(tmp_path, [".jpg"], notes=notes))
    assert walked == [str(tmp_path / "a" / "1.jpg"), str(tmp_path / "z" / "1.jpg")]
    assert notes.unreadable == {locked: "cannot read folder: Permission denied"}
    gone = WalkNotes()
    assert list(iter_images(tmp_path / "vanished", [".jpg"], notes=gone)) == []
    assert gone.unreadable == {
        str(tmp_path / "vanished"): "cannot read folder: No such file or directory"
    }
