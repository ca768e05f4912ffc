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

from tests.conftest import ARTIFACTS, Stack
from tests.helpers import submit, wait_job, write_images


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
