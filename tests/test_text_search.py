"""Text-to-image search: a CLIP embedder built from a config, with its tokenizer, behind the API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from tests.conftest import ARTIFACTS, Stack, run_stack
from tests.helpers import make_image, sha256_file, submit, wait_job, write_images
from tests.test_cli_client import cli
from tests.tiny_model import build_tiny_clip, build_tiny_model
from visionnet.workers.models.embedder import Embedder, TextSearchUnavailableError


@pytest.fixture(scope="module")
def clip_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from run_stack(tmp_path_factory.mktemp("clip-stack"), embedder=build_tiny_clip)


def test_clip_embedder_puts_text_and_images_in_one_space(tmp_path: Path) -> None:
    embedder = Embedder(str(build_tiny_clip(tmp_path / "clip")), "cpu")
    assert embedder.info["text_search"] is True and embedder.info["model_type"] == "clip"
    texts = embedder.embed_text(["a photo of a red car", "blue sky", "a photo of a red car"])
    images = embedder.embed([make_image(1)])
    assert texts.shape == (3, images.shape[1]) == (3, 8)
    assert np.allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-5)
    assert np.abs(texts[0] - texts[2]).max() <= 1e-6  # same text, same vector
    assert np.abs(texts[0] - texts[1]).max() > 1e-3


def test_models_without_a_text_tower_refuse_text(tmp_path: Path) -> None:
    embedder = Embedder(str(build_tiny_model(tmp_path / "resnet")), "cpu")
    assert embedder.info["text_search"] is False
    with pytest.raises(TextSearchUnavailableError, match="has no text encoder"):
        embedder.embed_text(["a dog"])


def test_text_search_through_the_api(clip_stack: Stack) -> None:
    paths = write_images(clip_stack.root / "text_gallery", range(8300, 8306))
    body = {"source": {"path": str(paths[0].parent)}, "collection": "text_gallery"}
    assert wait_job(clip_stack.base, submit(clip_stack.base, "index", json=body))["state"] == (
        "succeeded"
    )
    models = requests.get(clip_stack.base + "/api/v1/models", timeout=10).json()
    assert models["text_search"] is True
    assert models["embedder"]["model_type"] == "clip" and models["embedder"]["text_search"]

    query = {"text": "a photo of a red car", "collection": "text_gallery", "k": 4}
    job = wait_job(clip_stack.base, submit(clip_stack.base, "search", json=query))
    assert job["state"] == "succeeded", job
    hits = job["result"]["hits"]
    assert len(hits) == 4 and {h["path"] for h in hits} <= {str(p) for p in paths}
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert job["result"]["query_text"] == "a photo of a red car"

    # The CLI and the client say the same.
    found = cli(
        clip_stack, "search", "--text", "blue sky", "-c", "text_gallery", "-k", "2", "--json"
    )
    assert found.returncode == 0, found.stderr
    assert len(json.loads(found.stdout)["result"]["hits"]) == 2
    assert cli(clip_stack, "search", "-c", "text_gallery").returncode == 2  # neither

    # Exactly one of image_id and text.
    both = {**query, "image_id": "0" * 64}
    for bad in (both, {"collection": "text_gallery"}):
        r = requests.post(clip_stack.base + "/api/v1/search", json=bad, timeout=10)
        assert r.status_code == 400 and "either image_id or text" in r.json()["message"]


def test_text_search_on_an_image_only_embedder_is_a_clear_400(stack: Stack) -> None:
    """The default stack's embedder has no text tower: the page hides the box, the API says why."""
    paths = write_images(stack.root / "no_text", range(8400, 8402))
    body = {"source": {"path": str(paths[0].parent)}, "collection": "no_text"}
    assert wait_job(stack.base, submit(stack.base, "index", json=body))["state"] == "succeeded"
    assert requests.get(stack.base + "/api/v1/models", timeout=10).json()["text_search"] is False
    r = requests.post(
        stack.base + "/api/v1/search", json={"text": "a dog", "collection": "no_text"}, timeout=10
    )
    assert r.status_code == 400 and "has no text encoder" in r.json()["message"]


def test_the_page_searches_by_text_when_the_embedder_reads_text(
    browser: Any, clip_stack: Stack, stack: Stack
) -> None:
    """The text box shows for a CLIP embedder and its results are the API's; it stays
    hidden where the embedder reads no text (the default stack's)."""
    paths = write_images(clip_stack.root / "text_page", range(8500, 8508))
    body = {"source": {"path": str(paths[0].parent)}, "collection": "text_page"}
    assert wait_job(clip_stack.base, submit(clip_stack.base, "index", json=body))["state"] == (
        "succeeded"
    )
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(60_000)
    tab.goto(clip_stack.base + "/")
    tab.wait_for_selector("#text-form", state="visible")
    tab.wait_for_selector("#lookup-collection option[value=text_page]", state="attached")
    tab.select_option("#lookup-collection", "text_page")
    tab.fill("#lookup-k", "3")
    tab.fill("#text-query", "a photo of a red car")
    tab.press("#text-query", "Enter")
    tab.wait_for_selector("#lookup-result h3:text('Images matching')")
    cards = tab.locator("#lookup-result .grid li")
    cards.first.wait_for()
    shown = [cards.nth(i).locator(".path").inner_text() for i in range(cards.count())]
    scores = [float(cards.nth(i).locator(".score").inner_text()) for i in range(cards.count())]
    ARTIFACTS.mkdir(exist_ok=True)
    tab.screenshot(path=str(ARTIFACTS / "text-search.png"), full_page=True)
    # The same query through the API: the same images, in the same order.
    query = {"text": "a photo of a red car", "collection": "text_page", "k": 3}
    job = wait_job(clip_stack.base, submit(clip_stack.base, "search", json=query))
    assert shown == [hit["path"] for hit in job["result"]["hits"]]
    assert len(shown) == 3 and set(shown) <= {str(p) for p in paths}
    assert scores == sorted(scores, reverse=True)
    # The default stack's embedder reads no text: no box.
    tab.goto(stack.base + "/")
    tab.wait_for_load_state("networkidle")
    assert tab.locator("#text-form").is_hidden()
    context.close()


WORDS = ["cat", "car", "dog", "sky"]  # distinct first tokens: the tiny CLIP tells them apart


def _reference_probabilities(clip_dir: Path, paths: list[Path], prompt: str) -> np.ndarray:
    """CLIP's zero-shot scores computed here, through the same model code as the worker:
    softmax over the labels of exp(logit_scale) x cosine, logit_scale from the checkpoint."""
    from safetensors import safe_open

    from visionnet.workers.model_worker.reader import RawFile, decode

    embedder = Embedder(str(clip_dir), "cpu")
    texts = embedder.embed_text([prompt.replace("{}", w) for w in WORDS])
    images = embedder.embed(
        [decode(RawFile(p.name, p.read_bytes()), embedder.input_size) for p in paths]
    )
    with safe_open(str(clip_dir / "model.safetensors"), framework="pt") as f:
        scale = float(np.exp(f.get_tensor("logit_scale").item()))
    logits = scale * images.astype(np.float64) @ texts.T.astype(np.float64)
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs: np.ndarray = exp / exp.sum(axis=1, keepdims=True)
    return probs


def test_labels_from_words_classify_against_the_callers_labels(clip_stack: Stack) -> None:
    paths = write_images(clip_stack.root / "h6_words", range(61020, 61023))
    body = {"paths": [str(p) for p in paths], "labels": WORDS, "prompt": "{} photo", "top_k": 4}
    job = wait_job(clip_stack.base, submit(clip_stack.base, "classify", json=body))
    assert job["state"] == "succeeded", job
    assert job["result"]["labels_from_words"]["count"] == 4
    expected = _reference_probabilities(clip_stack.model_dir.parent / "embedder", paths, "{} photo")
    for image, want in zip(job["result"]["images"], expected, strict=True):
        preds = image["predictions"]
        assert [p["score"] for p in preds] == sorted((p["score"] for p in preds), reverse=True)
        assert sorted(p["label"] for p in preds) == sorted(WORDS)
        assert sum(p["score"] for p in preds) == pytest.approx(1.0, abs=1e-4)
        got = {p["label"]: p["score"] for p in preds}
        assert [got[w] for w in WORDS] == pytest.approx(list(want), abs=0.02)
    # Uploads with the labels as repeated form fields: the same answer.
    with paths[0].open("rb") as f:
        form = {"labels": WORDS, "prompt": "{} photo", "top_k": "2"}
        job_id = submit(clip_stack.base, "classify", files={"files": f}, data=form)
    uploaded = wait_job(clip_stack.base, job_id)["result"]["images"][0]["predictions"]
    assert [p["label"] for p in uploaded] == [
        p["label"] for p in job["result"]["images"][0]["predictions"][:2]
    ]


def test_an_index_job_stores_labels_from_words(clip_stack: Stack) -> None:
    paths = write_images(clip_stack.root / "h6_word_index", range(61030, 61033))
    body = {"source": {"path": str(paths[0].parent)}, "collection": "h6_words", "labels": WORDS}
    job = wait_job(clip_stack.base, submit(clip_stack.base, "index", json=body))
    assert job["state"] == "succeeded", job
    expected = _reference_probabilities(clip_stack.model_dir.parent / "embedder", paths, "{}")
    for path, want in zip(paths, expected, strict=True):
        stored = requests.get(
            f"{clip_stack.base}/api/v1/images/{sha256_file(path)}",
            params={"collection": "h6_words"},
            timeout=10,
        ).json()
        assert stored["label"] in WORDS
        order = np.argsort(-want)
        if want[order[0]] - want[order[1]] > 0.02:  # a clear best: the same one
            assert stored["label"] == WORDS[int(order[0])]
