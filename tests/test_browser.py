"""Real-browser tests in headless Chromium (Debian's package, driven by Playwright): the demo app
served on localhost, and the published book. Screenshots go to ``_build/screenshots/``.

Chromium is installed by ``tools/install_chromium.sh`` when it is missing, as CI needs; the tests
skip, saying so, only where it cannot be installed (no apt-get, no root).
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import nbformat
import pytest

from medclass import serving
from tests.conftest import ROOT
from tools import book, chapters, served_app

pytestmark = [pytest.mark.slow, pytest.mark.alone]  # a server, a browser

SCREENSHOTS = ROOT / "_build" / "screenshots"


@pytest.fixture(scope="session")
def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        result = subprocess.run(
            ["bash", str(ROOT / "tools" / "install_chromium.sh")], capture_output=True, text=True
        )
        if result.returncode == 3:
            pytest.skip(f"Chromium is missing and cannot be installed here: {result.stderr.strip()}")
        assert result.returncode == 0, f"tools/install_chromium.sh failed:\n{result.stdout}\n{result.stderr}"
        path = shutil.which("chromium")
    return path


@pytest.fixture
def page(chromium):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=served_app.HEADLESS_CHROMIUM_FLAGS
        )
        yield browser.new_page(viewport={"width": 1400, "height": 1000})
        browser.close()


def test_the_app_in_chromium_predicts_an_uploaded_image(page, saved_model, synthetic_dir, tmp_path):
    scan = sorted((synthetic_dir / "Training" / "glioma").glob("*.jpg"))[0]
    expected = serving.predict(serving.load_bundle(saved_model), serving.read_image(scan.read_bytes())[0])
    predicted = max(expected, key=expected.get)
    with served_app.served_app(saved_model, tmp_path / "streamlit.log") as url:
        page.goto(url)
        page.get_by_text("not a medical device").first.wait_for(timeout=120_000)
        # The uploader renders after the notice; under load that took more than Playwright's
        # default 30 s once, so it gets the same allowance as the rest of the page.
        page.locator('input[type="file"]').set_input_files(str(scan), timeout=120_000)
        metric = page.locator('[data-testid="stMetricValue"]')
        metric.wait_for(timeout=120_000)
        assert metric.inner_text().strip() == predicted
        page.get_by_text("risk score P(Tumor)").wait_for(timeout=30_000)
        page.locator('[data-testid="stImage"] img').nth(1).wait_for(timeout=30_000)  # image, Grad-CAM
        assert page.locator('[data-testid="stImage"] img').count() == 2
        page.get_by_text(f"Where the evidence for {predicted} lies").wait_for(timeout=30_000)
        assert page.locator('[data-testid="stException"]').count() == 0
        page.wait_for_timeout(1500)  # let the chart finish drawing before the picture
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "app.png"), full_page=True)
    assert (SCREENSHOTS / "app.png").stat().st_size > 20_000


@pytest.fixture(scope="module")
def published_html(tmp_path_factory):
    """The published book (``make published``: the committed ``cpu`` results) rendered once."""
    published = book.PUBLISHED_DIR / "cpu"
    assert published.is_dir(), f"no published results at {published}: run make book PROFILE=cpu"
    build_dir = tmp_path_factory.mktemp("published")
    result = subprocess.run(
        [sys.executable, "-m", "tools.book", "--render", "cpu", "--build-dir", str(build_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return build_dir / "published" / "html"


def test_the_published_book_shows_real_results_with_their_provenance(page, published_html):
    profile, published, html = "cpu", book.PUBLISHED_DIR / "cpu", published_html
    for source in chapters.toc_notebooks():
        record = nbformat.read(published / source.name, as_version=4).metadata["medclass"]
        # the residual-network chapter learns scikit-learn's digits: it has no `synthetic`
        assert record["profile"] == profile and not record["parameters"].get("synthetic"), source.name
        text = (html / "notebooks" / f"{source.stem}.html").read_text()
        assert "How the results on this page were produced" in text and "Hardware" in text, source.stem
    page.goto((html / "notebooks" / "brain_03_evaluation.html").as_uri())
    note = page.locator(".admonition", has_text="How the results on this page were produced")
    note.wait_for(timeout=30_000)
    words = note.inner_text()
    assert f"{profile}.yaml" in words
    for fact in ("real data", "Brain Tumor MRI", "mobilenet_v2", "Hardware", "Run time", "Code"):
        assert fact in words, f"the provenance note lacks {fact!r}: {words}"
    assert "synthetic" not in words
    assert page.get_by_text("Model card:").count() >= 1
    figures = page.locator("img[src*='_images/']")
    assert figures.count() >= 8
    note.scroll_into_view_if_needed()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"published_{profile}_brain_03_evaluation.png"))
    page.goto((html / "notebooks" / "skin_03_evaluation.html").as_uri())
    skin_note = page.locator(".admonition", has_text="How the results on this page were produced")
    assert "HAM10000" in skin_note.inner_text() and "synthetic" not in skin_note.inner_text()


# What a reader's browser shows of a page: code wider than its box (cut, or hidden behind a
# scroll bar; printed output may scroll), images of the book that did not load, figures shrunk
# to fit the text column until their labels are unreadable (below 3/4 of their size: 8-point
# text drawn at 100 dpi then shows under 8 px; medclass.figures sizes them for the page), and
# markdown left unrendered in the text: a role such as {doc}`...`, a fence, **bold** or a #
# heading.
RAW_MARKDOWN = r"\{(doc|ref|cite|func|class|glue)\}`|```|\*\*\w[^*]*\*\*|^#{1,4} "
PAGE_PROBLEMS = """(rawMarkdown) => {
    const main = document.querySelector("main") || document.body;
    const shown = (node) => node.clientWidth > 0;  // a folded cell's code is not on screen
    const cut = [...main.querySelectorAll("pre")]
        .filter((pre) => shown(pre) && !pre.closest(".cell_output"))
        .filter((pre) => pre.scrollWidth > pre.clientWidth + 1)
        .map((pre) => "code wider than the page: " + pre.innerText.split("\\n")[0].slice(0, 60));
    const broken = [...main.querySelectorAll("img")]  // the Colab badge is on the web
        .filter((img) => img.src.startsWith("file:") && !(img.complete && img.naturalWidth > 0))
        .map((img) => "image not loaded: " + img.getAttribute("src"));
    const shrunk = [...main.querySelectorAll(".cell_output img")]
        .filter((img) => img.naturalWidth > 0 && img.clientWidth < 0.75 * img.naturalWidth)
        .map((img) => `figure shown at ${Math.round(100 * img.clientWidth / img.naturalWidth)}% `
            + `of its ${img.naturalWidth} px: ` + img.getAttribute("src"));
    const text = [...main.querySelectorAll("p, li, td, th, h1, h2, h3, dd, dt")]
        .map((node) => node.innerText).join("\\n");
    const raw = (text.match(new RegExp(rawMarkdown, "gm")) || [])
        .map((found) => "raw markdown: " + found.slice(0, 40));
    return [...cut, ...broken, ...shrunk, ...raw];
}"""


@pytest.mark.parametrize("which", ["demo", "published"])
def test_every_page_of_the_book_reads_in_a_browser(page, which, request):
    """Issue 18: no horizontally cut code, no shrunk figure, no raw markdown, every image loads,
    on every page of the book `make book` builds from this commit's sources (the demo run's
    outputs) and of the published book (`make published`: the committed `cpu` run's)."""
    if which == "demo":
        build_dir, _ = request.getfixturevalue("demo_book")
        html = build_dir / "html"
    else:
        html = request.getfixturevalue("published_html")
    problems = []
    for name in chapters.toc_files():
        page.goto((html / f"{name}.html").as_uri())
        page.wait_for_load_state("load")
        problems += [f"{name}: {problem}" for problem in page.evaluate(PAGE_PROBLEMS, RAW_MARKDOWN)]
    assert problems == []
