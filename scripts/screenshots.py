"""Screenshots of the page and of Flower for the README, from a real stack on real photos.

    .venv/bin/python scripts/screenshots.py --photos ../shared/datasets/imagenet-sample-100 \\
        --bulk ../shared/datasets/cifar10-test --out docs/screenshots

Starts a private stack (``visionnet up``, demo model, with Flower), indexes the
photos through the API, then drives the page in headless Chromium as a user
would: drop a photo (labels and similar images), index a folder from the form
(the live job card), the jobs and collections lists; then Flower's workers.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stack import private_stack

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


def wait_job(base: str, job_id: str) -> dict[str, object]:
    while True:
        job: dict[str, object] = requests.get(f"{base}/api/v1/jobs/{job_id}", timeout=10).json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.3)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", type=Path, required=True)
    ap.add_argument("--bulk", type=Path, required=True, help="a folder to index from the page")
    ap.add_argument("--query", default=None, help="file name in --photos to search with")
    ap.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    photos, bulk = args.photos.resolve(), args.bulk.resolve()
    query = photos / (args.query or sorted(p.name for p in photos.iterdir())[37])
    chromium = shutil.which("chromium") or sys.exit("needs chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with (
        tempfile.TemporaryDirectory() as tmp,
        private_stack(Path(tmp), [photos, bulk], flower=True) as base,
    ):
        body = {"source": {"path": str(photos)}, "collection": "photos", "classify": True}
        job_id = requests.post(f"{base}/api/v1/index", json=body, timeout=30).json()["job_id"]
        print("indexed photos:", wait_job(base, job_id)["state"])
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(120_000)
            page.goto(base + "/")
            page.wait_for_selector("#lookup-collection option[value=photos]", state="attached")
            page.select_option("#lookup-collection", "photos")
            page.set_input_files("#files", str(query))
            page.wait_for_selector("#lookup-result .grid li")
            page.wait_for_function(
                "() => [...document.querySelectorAll('#lookup-result .grid img')]"
                ".every(i => i.complete && i.naturalWidth > 0)"
            )
            page.locator("main > section").first.screenshot(
                path=str(args.out / "page-search.jpg"), quality=82
            )

            page.fill("#index-form input[name=path]", str(bulk))
            page.fill("#index-form input[name=collection]", "cifar")
            page.click("#index-form button")
            card = page.locator("#job-cards .job").first
            page.wait_for_function(
                "() => { const p = document.querySelector('#job-cards .job progress');"
                " return p && p.max > 1 && p.value / p.max > 0.3; }"
            )
            card.screenshot(path=str(args.out / "page-index-progress.png"))
            card.locator(".state-succeeded").wait_for()
            page.click("#jobs-first")
            time.sleep(1)
            page.locator("main > section").nth(1).screenshot(path=str(args.out / "page-index.png"))
            page.locator("main > section").nth(2).screenshot(path=str(args.out / "page-jobs.png"))

            flower_url = page.get_attribute("#flower-link", "href")
            if flower_url:
                page.goto(flower_url + "workers")
                page.wait_for_selector("table")
                time.sleep(2)
                page.screenshot(path=str(args.out / "flower-workers.png"))
            browser.close()
    for shot in sorted(args.out.glob("*.*")):
        print(shot, shot.stat().st_size)


if __name__ == "__main__":
    main()
