"""The page in a real browser (headless Chromium, driven by Playwright) against the live stack.

Each test saves a screenshot under ``test-artifacts/``. Chromium comes from the
system (``scripts/setup.sh`` installs Debian's with apt); where there is none,
these tests are skipped with the reason in the summary, never silently (the
``browser`` fixture, in conftest.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image, PngImagePlugin

from tests.conftest import ARTIFACTS, Stack
from tests.helpers import make_image, sha256_file, submit, wait_job, write_images


@pytest.fixture
def page(browser: Any, stack: Stack, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(60_000)
    tab.goto(stack.base + "/")
    yield tab
    ARTIFACTS.mkdir(exist_ok=True)
    tab.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()


def test_an_image_shows_its_labels_and_similar_images_first_itself(page: Any, stack: Stack) -> None:
    paths = write_images(stack.root / "browser_gallery", range(7000, 7012))
    body = {"source": {"path": str(paths[0].parent)}, "collection": "browser_gallery"}
    assert wait_job(stack.base, submit(stack.base, "index", json=body))["state"] == "succeeded"
    page.reload()
    page.wait_for_selector("#lookup-collection option[value=browser_gallery]", state="attached")
    page.select_option("#lookup-collection", "browser_gallery")
    page.set_input_files("#files", str(paths[4]))
    page.wait_for_selector("#lookup-result .grid li")
    assert page.locator("#lookup-result .labels li").count() == 5
    first = page.locator("#lookup-result .grid li").first
    assert first.locator(".path").inner_text() == str(paths[4])
    assert float(first.locator(".score").inner_text()) == pytest.approx(1.0, abs=1e-3)
    # Thumbnails load (served by id from the API).
    page.wait_for_function(
        "() => [...document.querySelectorAll('#lookup-result .grid img')]"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )
    # Clicking a result searches with it.
    page.locator("#lookup-result .grid li").nth(1).locator("button").click()
    page.wait_for_selector("#lookup-result h3:text('Similar to')")


def test_an_index_job_shows_progress_to_100_and_appears_in_the_jobs_list(
    page: Any, stack: Stack
) -> None:
    folder = stack.root / "browser_index"
    write_images(folder, range(7100, 7140))
    (folder / "broken.png").write_bytes(b"not a png at all")
    page.fill("#index-form input[name=path]", str(folder))
    page.fill("#index-form input[name=collection]", "browser_index")
    page.click("#index-form button")
    card = page.locator("#job-cards .job").first
    card.locator(".state-succeeded").wait_for()
    bar = card.locator("progress")
    assert bar.get_attribute("value") == bar.get_attribute("max") == "41"
    assert "broken.png" in card.locator(".failures").inner_text()  # the failure, in words
    assert "null" not in card.inner_text()
    job_id = card.get_attribute("data-job")
    row = page.locator("#jobs tbody tr", has_text=job_id[:8])
    row.wait_for()
    assert "index" in row.inner_text() and "succeeded" in row.inner_text()


def test_a_file_that_is_not_an_image_says_which_and_why(page: Any, tmp_path: Path) -> None:
    bad = tmp_path / "holiday.jpg"
    bad.write_bytes(b"this is a text file with a .jpg name")
    page.set_input_files("#files", str(bad))
    alert = page.locator("#alert")
    alert.wait_for(state="visible")
    text = alert.inner_text()
    assert "holiday.jpg" in text and "not an image" in text


def test_the_page_fits_a_phone_width_and_works_from_the_keyboard(
    browser: Any, stack: Stack
) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844})
    tab = context.new_page()
    # Listen for the chooser before the page loads: Playwright turns Chromium's
    # file-chooser interception on without waiting for a reply, so a listener added
    # just before the key press can lose the race on a loaded machine (seen in CI).
    choosers: list[Any] = []
    tab.on("filechooser", lambda chooser: choosers.append(chooser))
    tab.goto(stack.base + "/")
    tab.wait_for_load_state("networkidle")
    overflow = tab.evaluate("() => document.scrollingElement.scrollWidth - window.innerWidth")
    ARTIFACTS.mkdir(exist_ok=True)
    tab.screenshot(path=str(ARTIFACTS / "phone-width.png"), full_page=True)
    assert overflow <= 0, f"the page is {overflow}px wider than a phone"
    # The drop zone takes focus and Enter opens the file chooser.
    tab.focus("#drop")
    tab.keyboard.press("Enter")
    deadline = time.monotonic() + 30
    while not choosers and time.monotonic() < deadline:
        tab.wait_for_timeout(100)
    assert choosers, "Enter on the drop zone opened no file chooser"
    assert choosers[0].is_multiple()
    context.close()


# The tiny random-weights model puts copies of one picture (same pixels, or resized) at
# cosine >= 0.9999 and different pictures of these seeds at <= 0.996 (measured), so
# 0.999 separates them with room on both sides.
DUP_THRESHOLD = "0.999"


def _png(path: Path, image: Image.Image, comment: str | None = None) -> str:
    info = PngImagePlugin.PngInfo()
    if comment:  # the same pixels in other bytes: another id
        info.add_text("Comment", comment)
    image.save(path, pnginfo=info)
    return sha256_file(path)


def _near_duplicates(folder: Path) -> list[list[str]]:
    """Ids of groups of copies (original, twice as large, re-saved) and two singles."""
    folder.mkdir(parents=True, exist_ok=True)
    groups = []
    for seed, copies in ((12700, 3), (12701, 2), (12702, 2), (12703, 1), (12704, 1)):
        base = make_image(seed, (96, 80))
        versions = [
            ("a", base, None),
            ("big", base.resize((192, 160)), None),
            ("copy", base, "a copy"),
        ]
        groups.append([_png(folder / f"s{seed}_{n}.png", i, c) for n, i, c in versions[:copies]])
    return groups


def test_duplicates_view_keeps_the_chosen_member_and_deletes_the_others(
    page: Any, stack: Stack
) -> None:
    collection = "browser_dups"
    groups = _near_duplicates(stack.root / collection)
    body = {"source": {"path": str(stack.root / collection)}, "collection": collection}
    assert wait_job(stack.base, submit(stack.base, "index", json=body))["state"] == "succeeded"
    page.reload()
    page.click("nav a[href='#duplicates']")
    page.wait_for_selector(f"#dups-collection option[value={collection}]", state="attached")
    page.select_option("#dups-collection", collection)
    page.fill("#dups-threshold", DUP_THRESHOLD)
    page.click("#dups-form button")
    page.wait_for_selector("#dups-groups .dup-group")

    shown = page.locator("#dups-groups .dup-group")
    members = [
        shown.nth(i).locator("li.member").evaluate_all("els => els.map(e => e.dataset.id)")
        for i in range(shown.count())
    ]
    assert len(members[0]) == 3  # largest first
    assert sorted(map(sorted, members)) == sorted(map(sorted, groups[:3]))  # no singles
    for i in range(len(members)):
        # The suggestion, listed first: the member with the most pixels, marked and chosen.
        first = shown.nth(i).locator("li.member").first
        assert first.get_attribute("data-id") in {g[1] for g in groups[:3]}
        assert first.locator(".suggested").count() == 1
        assert first.locator("input[type=radio]").is_checked()
        assert "192\u00d7160" in first.inner_text() and "KiB" in first.inner_text()
    assert shown.locator(".suggested").count() == len(members)
    shown.first.scroll_into_view_if_needed()  # thumbnails load lazily
    page.wait_for_function(
        "() => [...document.querySelectorAll('#dups-groups .dup-group:first-child img')]"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )

    # Keep the small original of the first group instead of the suggestion.
    chosen = groups[0][0]
    shown.first.locator(f"li.member[data-id='{chosen}'] input[type=radio]").check()
    assert shown.first.locator("li.kept").get_attribute("data-id") == chosen
    kept = {chosen} | {g[1] for g in groups[1:3]} | {g[0] for g in groups[3:]}
    gone = {i for g in groups for i in g} - kept
    page.click("#dups-delete")
    dialog = page.locator("#dups-confirm")
    dialog.wait_for(state="visible")
    assert f"{len(gone)} image(s)" in dialog.inner_text()
    page.click("#dups-confirm-delete")
    outcome = page.locator("#dups-outcome .state-succeeded")
    outcome.wait_for()
    assert outcome.inner_text() == f"Deleted {len(gone)} image(s)."
    assert page.locator("#dups-groups li.deleted").count() == len(gone)

    for image_id in kept | gone:
        r = requests.get(
            f"{stack.base}/api/v1/images/{image_id}",
            params={"collection": collection},
            timeout=10,
        )
        assert r.status_code == (404 if image_id in gone else 200), (image_id, r.text)
