"""The search page `GET /` in a real headless Chromium, against the real app serving a real index.

Chromium is Debian's package (`bash scripts/browser.sh` installs it), driven by Playwright's Python
client with `executable_path` (no `playwright install`, no download). Set SEARCH_PAGE_SCREENSHOT to
a path to also save the results-grid screenshot there (docs/search-page.png is made that way).
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from demo.catalog import CatalogEntry
from devstack.kit.catalog import catalog_environment
from searchapi import create_app
from tests.integration.helpers import photo_entries, run_full, seed

pytestmark = [pytest.mark.integration]

TIMEOUT_MS = 30_000  # generous: a query runs VGG16 on a loaded 2-core machine
SCORE = re.compile(r"^[01]\.\d{3}$")
EVIL_PRODUCT = "<img src=x onerror=window.__xss=1>"
BROWSER_MISSING = (
    "Chromium is not installed, so the search page can't be tested: run `bash scripts/browser.sh` "
    "(installs Debian's `chromium`; `make test` runs it)."
)

CARDS_JS = """() => [...document.querySelectorAll('#results .hit')].map((li) => ({
    id: li.dataset.id,
    product: li.querySelector('.product').textContent,
    score: li.querySelector('.score').textContent,
    imageId: li.querySelector('.image-id').textContent,
    thumbnail: li.querySelector('img').getAttribute('src'),
}))"""
THUMBNAILS_LOADED_JS = """() => {
    const images = [...document.querySelectorAll('#results img')];
    return images.length > 0 && images.every((image) => image.complete && image.naturalWidth > 0);
}"""
DISPATCH_FILE_JS = """([kind, b64, name]) => {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const transfer = new DataTransfer();
    transfer.items.add(new File([bytes], name, {type: 'image/jpeg'}));
    if (kind === 'paste') {
        const event = new ClipboardEvent('paste', {clipboardData: transfer, bubbles: true, cancelable: true});
        if (!event.clipboardData || event.clipboardData.files.length !== 1) return 'no clipboardData';
        document.body.dispatchEvent(event);
        return event.defaultPrevented ? 'handled' : 'ignored';
    }
    const zone = document.getElementById('drop');
    for (const type of ['dragenter', 'dragover']) {
        zone.dispatchEvent(new DragEvent(type, {dataTransfer: transfer, bubbles: true, cancelable: true}));
    }
    const highlighted = zone.classList.contains('over');
    const drop = new DragEvent('drop', {dataTransfer: transfer, bubbles: true, cancelable: true});
    zone.dispatchEvent(drop);
    return highlighted && drop.defaultPrevented ? 'handled' : 'ignored';
}"""


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(BROWSER_MISSING, pytrace=False)


@contextmanager
def serve(app) -> Iterator[str]:
    """The real app on a loopback port (threaded werkzeug server); yields its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def indexed_site(stack_urls, es, extractor, image_server, reports: str, entries) -> Iterator[str]:
    """Seed a catalog, index it under a fresh alias with `indexer full`, serve the API on it."""
    alias = f"test-page-{uuid.uuid4().hex[:8]}"
    env = {**catalog_environment(*stack_urls, alias, reports), "IMAGE_BASE_URL": image_server}
    seed(env, entries)
    report = run_full(env, extractor)
    assert report.statuses == {"indexed": len(entries)}, report.failures
    app = create_app({**env, "SEARCH_URL_ALLOWED_HOSTS": "127.0.0.1"}, extractor=extractor)
    try:
        with serve(app) as base_url:
            yield base_url
    finally:
        es.options(ignore_status=404).indices.delete(index=f"{alias}*", expand_wildcards="all")


@pytest.fixture(scope="module")
def site(stack_urls, es, extractor, image_server, tmp_path_factory) -> Iterator[str]:
    """4 products x 2 views (ids 1-8; product-00N's front view is id 2N-1)."""
    reports = str(tmp_path_factory.mktemp("page-reports"))
    with indexed_site(stack_urls, es, extractor, image_server, reports, photo_entries(4, 2)) as url:
        yield url


@pytest.fixture(scope="module")
def evil_site(stack_urls, es, extractor, image_server, tmp_path_factory) -> Iterator[str]:
    """A catalog whose product id is HTML: the page must show it as text."""
    reports = str(tmp_path_factory.mktemp("evil-reports"))
    entries = [
        CatalogEntry(1, EVIL_PRODUCT, "p001-astronaut-front.jpg"),
        CatalogEntry(2, "product-002", "p002-chelsea-front.jpg"),
    ]
    with indexed_site(stack_urls, es, extractor, image_server, reports, entries) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    executable = chromium_path()
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        pytest.fail("playwright is missing: run `.venv/bin/pip install -r requirements.txt`", pytrace=False)
    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable,
            headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
            timeout=TIMEOUT_MS,
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    """A fresh page; uncaught script errors and CSP violations fail the test."""
    context = browser.new_context(viewport={"width": 1120, "height": 820})
    tab = context.new_page()
    tab.set_default_timeout(TIMEOUT_MS)
    problems: list[str] = []
    tab.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    tab.on(
        "console",
        lambda message: problems.append(f"console: {message.text}")
        if "Content Security Policy" in message.text
        else None,
    )
    yield tab
    context.close()
    assert not problems, problems


def expect(locator):
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def settled_cards(page, count: int, answer: dict | None = None) -> list[dict[str, str]]:
    """Wait for `count` result cards and the end of the request, then read them."""
    if answer is not None:
        assert len(answer["hits"]) == count, f"the API answered {answer}"
    expect(page.locator("#results .hit")).to_have_count(count)
    expect(page.locator("#results")).to_have_attribute("aria-busy", "false")
    return page.evaluate(CARDS_JS)


def answer_of(page, predicate, action):
    """Run `action` and return the JSON answer of the API call matching `predicate(url)`."""
    with page.expect_response(lambda response: predicate(response.url)) as response_info:
        action()
    return response_info.value.json()


def is_search(url: str) -> bool:
    return "/search?" in url


def assert_cards_match(cards, body) -> None:
    """The grid shows exactly the API's hits, in order, with formatted scores and thumbnails."""
    hits = body["hits"]
    assert [card["id"] for card in cards] == [hit["id"] for hit in hits]
    assert [card["product"] for card in cards] == [hit["relation_id"] for hit in hits]
    assert [card["score"] for card in cards] == [f"{hit['score']:.3f}" for hit in hits]
    assert [card["imageId"] for card in cards] == [f"image {hit['id']}" for hit in hits]
    assert [card["thumbnail"] for card in cards] == [hit["image_url"] for hit in hits]
    assert all(SCORE.match(card["score"]) for card in cards), cards


def api_get(base_url: str, path: str) -> dict | None:
    """The JSON answer of GET path, or None when the app has no such endpoint (yet) or it fails."""
    try:
        with urllib.request.urlopen(base_url + path, timeout=30) as response:
            return json.load(response)
    except urllib.error.HTTPError:
        return None


def wait_for_thumbnails(page) -> None:
    page.wait_for_function(THUMBNAILS_LOADED_JS, timeout=TIMEOUT_MS)


def dispatch_file(page, kind: str, path: Path) -> str:
    payload = base64.b64encode(path.read_bytes()).decode()
    return page.evaluate(DISPATCH_FILE_JS, [kind, payload, path.name])


def save_docs_screenshot(page) -> None:
    """With SEARCH_PAGE_SCREENSHOT set: a small palette PNG of the page for the README."""
    target = os.environ.get("SEARCH_PAGE_SCREENSHOT")
    if not target:
        return
    from PIL import Image

    shot = Image.open(io.BytesIO(page.locator("body").screenshot())).convert("RGB")
    shot.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(target, optimize=True)


def test_upload_shows_the_grid_of_products_with_thumbnails_scores_and_warning(
    page, site, photo_folder, image_server, tmp_path
):
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(site + "/")
    expect(page).to_have_title("Image similarity search")
    upload = page.get_by_label("Upload an image")
    expect(upload).to_be_visible()
    expect(page.locator("#error")).to_be_hidden()

    photo = photo_folder / "p003-coffee-front.jpg"
    body = answer_of(page, is_search, lambda: upload.set_input_files(photo))
    cards = settled_cards(page, 4, body)
    assert_cards_match(cards, body)
    assert cards[0]["product"] == "product-003" and cards[0]["id"] == "5"
    assert sorted(card["product"] for card in cards) == [f"product-00{n}" for n in range(1, 5)]
    wait_for_thumbnails(page)

    expect(page.locator("#warning")).to_be_visible()
    expect(page.locator("#warning")).to_contain_text(body["model"]["warning"])
    expect(page.locator("#status")).to_contain_text("4 products shown")
    expect(page.locator("#query-caption")).to_contain_text("p003-coffee-front.jpg")
    assert page.eval_on_selector("#query-image", "image => image.complete && image.naturalWidth > 0")
    expect(page.locator("#error")).to_be_hidden()
    stats = api_get(site, "/stats")  # optional endpoint: the page shows it when the app has it
    if stats and isinstance(stats.get("documents"), int):
        assert stats["documents"] == 8
        expect(page.locator("#index-info")).to_contain_text("8 images indexed")
    else:
        expect(page.locator("#index-info")).to_be_hidden()
    expect(page.get_by_role("list", name="Similar products, best first")).to_be_visible()
    first_result = page.get_by_role("button", name=re.compile(r"^Result 1: product product-003, image 5"))
    expect(first_result).to_be_visible()

    outside = [url for url in requested if not url.startswith((site + "/", image_server, "data:", "blob:"))]
    assert not outside, f"the page loaded external resources: {outside}"
    assert any(url.startswith(site + "/static/app.js") for url in requested)
    page.locator("main").screenshot(path=str(tmp_path / "search-page.png"))
    save_docs_screenshot(page)


def test_the_first_view_warns_about_random_weights_and_says_where_to_start(page, site):
    page.goto(site + "/")
    warning = page.locator("#warning")
    expect(warning).to_be_visible()
    expect(warning).to_contain_text("VGG16_WEIGHTS=random")
    expect(page.locator("#start")).to_contain_text("upload it, drop or paste it here, or give its URL")
    api = page.get_by_role("link", name="/openapi.json")
    expect(api).to_have_attribute("href", "/openapi.json")
    assert api_get(site, "/openapi.json")["openapi"] == "3.1.0"


def test_clicking_a_result_searches_more_like_it_and_the_link_reloads(page, site, photo_folder):
    page.goto(site + "/")
    photo = photo_folder / "p001-astronaut-front.jpg"
    first = answer_of(page, is_search, lambda: page.get_by_label("Upload an image").set_input_files(photo))
    cards = settled_cards(page, 4, first)
    clicked = next(card for card in cards if card["product"] == "product-002")

    def similar(url: str) -> bool:
        return f"/images/{clicked['id']}/similar?" in url

    target = page.locator(f"#results .hit[data-id='{clicked['id']}'] button")
    body = answer_of(page, similar, target.click)
    cards = settled_cards(page, 3, body)
    assert_cards_match(cards, body)
    assert "product-002" not in {card["product"] for card in cards}
    caption = page.locator("#query-caption")
    expect(caption).to_contain_text(f"More like image {clicked['id']}, product product-002")
    assert page.get_attribute("#query-image", "src") == clicked["thumbnail"]
    wait_for_thumbnails(page)
    assert page.url.endswith(f"/?image={clicked['id']}")

    reloaded = answer_of(page, similar, page.reload)
    assert reloaded["hits"] == body["hits"]
    assert_cards_match(settled_cards(page, 3, reloaded), reloaded)
    expect(page.locator("#query-caption")).to_contain_text(f"More like image {clicked['id']}")
    if api_get(site, f"/images/{clicked['id']}"):  # optional endpoint: the preview of a link comes from it
        expect(page.locator("#query-image")).to_have_attribute("src", clicked["thumbnail"])
        expect(page.locator("#query-caption")).to_contain_text("product product-002")


def test_pasted_url_searches_by_url_with_the_button_and_with_enter(page, site, image_server):
    page.goto(site + "/")
    field = page.get_by_label("Image URL")
    field.fill(image_server + "p002-chelsea-crop.jpg")
    body = answer_of(page, is_search, page.get_by_role("button", name="Search URL").click)
    cards = settled_cards(page, 4, body)
    assert_cards_match(cards, body)
    assert (cards[0]["product"], cards[0]["id"]) == ("product-002", "4")
    wait_for_thumbnails(page)
    assert page.eval_on_selector("#query-image", "image => image.complete && image.naturalWidth > 0")

    field.fill(image_server + "p004-rocket-front.jpg")
    body = answer_of(page, is_search, lambda: field.press("Enter"))
    expect(page.locator("#results .hit").first).to_have_attribute("data-id", "7")
    assert_cards_match(settled_cards(page, 4, body), body)


def test_dropped_and_pasted_image_files_are_searched(page, site, photo_folder):
    page.goto(site + "/")
    dropped = photo_folder / "p001-astronaut-crop.jpg"
    outcome: list[str] = []
    body = answer_of(page, is_search, lambda: outcome.append(dispatch_file(page, "drop", dropped)))
    assert outcome == ["handled"]
    cards = settled_cards(page, 4, body)
    assert_cards_match(cards, body)
    assert (cards[0]["product"], cards[0]["id"]) == ("product-001", "2")
    expect(page.locator("#query-caption")).to_contain_text("Dropped file: p001-astronaut-crop.jpg")
    expect(page.locator("#drop")).not_to_have_class(re.compile(r"\bover\b"))

    pasted = photo_folder / "p004-rocket-crop.jpg"
    outcome.clear()
    body = answer_of(page, is_search, lambda: outcome.append(dispatch_file(page, "paste", pasted)))
    assert outcome == ["handled"]
    cards = settled_cards(page, 4, body)
    assert_cards_match(cards, body)
    assert (cards[0]["product"], cards[0]["id"]) == ("product-004", "8")
    expect(page.locator("#query-caption")).to_contain_text("Pasted image")


def test_more_results_pages_with_from(page, site, photo_folder):
    page.goto(site + "/")
    page.get_by_label("Results per page").fill("2")
    photo = photo_folder / "p003-coffee-front.jpg"
    first = answer_of(page, is_search, lambda: page.get_by_label("Upload an image").set_input_files(photo))
    assert (first["from"], first["size"]) == (0, 2)
    assert_cards_match(settled_cards(page, 2, first), first)
    more = page.get_by_role("button", name="More results")
    expect(more).to_be_visible()

    second = answer_of(page, lambda url: is_search(url) and "from=2" in url, more.click)
    assert (second["from"], second["size"], len(second["hits"])) == (2, 2, 2), second
    cards = settled_cards(page, 4)
    assert_cards_match(cards, {"hits": first["hits"] + second["hits"]})
    assert len({card["product"] for card in cards}) == 4
    expect(page.locator("#status")).to_contain_text("4 products shown")

    if second.get("has_more", True):  # without `has_more` a full page offers more: an empty one ends it
        last = answer_of(page, lambda url: is_search(url) and "from=4" in url, more.click)
        assert last["hits"] == []
    expect(more).to_be_hidden()
    expect(page.locator("#status")).to_contain_text(re.compile("no more results", re.IGNORECASE))
    assert len(settled_cards(page, 4)) == 4


def test_api_errors_show_the_json_message_and_no_stack_trace(page, site, photo_folder, tmp_path):
    page.goto(site + "/")
    not_an_image = tmp_path / "notes.txt"
    not_an_image.write_text("this is plain text, not a photo\n")
    upload = page.get_by_label("Upload an image")
    body = answer_of(page, is_search, lambda: upload.set_input_files(not_an_image))
    assert body["error"]["status"] == 400
    alert = page.get_by_role("alert")
    expect(alert).to_be_visible()
    expect(alert).to_contain_text(body["error"]["message"])
    expect(alert).to_contain_text(f"HTTP 400 {body['error']['code']}")
    expect(page.locator("#results .hit")).to_have_count(0)
    page_text = page.locator("body").inner_text()
    assert "Traceback" not in page_text and 'File "' not in page_text

    field = page.get_by_label("Image URL")
    field.fill("http://169.254.169.254/latest/meta-data")
    body = answer_of(page, is_search, lambda: field.press("Enter"))
    assert body["error"]["code"] == "forbidden_image_url"
    expect(alert).to_contain_text(body["error"]["message"])

    photo = photo_folder / "p002-chelsea-front.jpg"
    body = answer_of(page, is_search, lambda: upload.set_input_files(photo))
    settled_cards(page, 4, body)
    expect(page.locator("#error")).to_be_hidden()


def test_api_strings_are_shown_as_text_never_as_html(page, evil_site, photo_folder):
    page.goto(evil_site + "/")
    photo = photo_folder / "p001-astronaut-front.jpg"
    body = answer_of(page, is_search, lambda: page.get_by_label("Upload an image").set_input_files(photo))
    cards = settled_cards(page, 2, body)
    assert_cards_match(cards, body)
    assert cards[0]["product"] == EVIL_PRODUCT

    target = page.locator("#results .hit[data-id='1'] button")
    similar = answer_of(page, lambda url: "/images/1/similar?" in url, target.click)
    assert_cards_match(settled_cards(page, 1, similar), similar)
    expect(page.locator("#query-caption")).to_contain_text(EVIL_PRODUCT)
    assert page.evaluate("() => window.__xss") is None
    assert page.evaluate("() => document.querySelectorAll('img').length") == 2  # the query and one thumbnail
