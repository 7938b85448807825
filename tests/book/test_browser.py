"""The built book in a real browser: every page loads its images, fits its column, shows no error,
renders its equations with the MathJax the book ships, shows figure text at a readable size, and
reads on a phone (390 px) without scrolling sideways and with figure text still readable there.

Needs a built book (``make book`` writes ``_build/html``), a system Chromium (Debian's
``chromium``, or any Chrome named by the ``CHROMIUM`` variable) and Playwright for Python, which
drives it (no browser is downloaded). Run after the book is built: ``make browser-test``.
Screenshots of every page go to ``_build/screenshots/`` (1280 px) and ``_build/screenshots/390/``. With ``DDD_REQUIRE_BROWSER=1`` (CI) a
missing book, browser or Playwright fails the tests instead of skipping them.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import threading
from pathlib import Path

import pytest
from PIL import Image

from ddd_support.book import run as book
from ddd_support.figures.runs import MIN_FONT_PT

pytestmark = pytest.mark.book

HTML = book.PROJECT_ROOT / "_build" / "html"
SCREENSHOTS = book.PROJECT_ROOT / "_build" / "screenshots"
PAGES = book.chapter_names()
#: Pages on which every figure must have a caption; extend it as chapters get theirs.
CAPTIONED_PAGES = ["book/intro", "book/01_noise", "book/02_training", "book/03_loss_decomposition",
                   "book/04_separation", "book/05_large_activation", "book/06_conclusions", "book/07_sweeps",
                   "book/appendix_reproducibility"]
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
VIEWPORT = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
#: The smallest figure text, in CSS pixels as displayed at 1280 px: the figures' smallest font
#: (``MIN_FONT_PT`` at the PNG's dpi) times the scale the page shows the image at.
MIN_TEXT_PX = 13.0
#: The smallest figure text as displayed on a phone (390 px): a figure shrunk to the column would
#: show it at 7-8 px; book.css keeps figures wide enough, scrolling inside their own box.
MIN_PHONE_TEXT_PX = 11.0
#: TeX that MathJax did not typeset (in the text, outside code).
RAW_TEX = re.compile(r"\$\$|\\(?:begin|end|frac|mathrm|operatorname|sum|tag)\b|\\[()\[\]]")
#: Error text: anywhere on the page, and (the bare word) in cell outputs.
PAGE_ERRORS = re.compile(r"Traceback|\b[A-Z]\w*Error: |Error displaying widget|\{glue")
OUTPUT_ERRORS = re.compile(r"\bError\b|\b[A-Z]\w*Error\b")
#: A widget's Python repr (``interactive(children=(Dropdown(...``): a fallback nobody can read.
WIDGET_REPR = re.compile(r"\b[A-Z]?\w+\(children=")

#: One pass over a loaded page: everything the tests below assert on.
INSPECT = """() => {
  const article = document.querySelector("article.bd-article") || document.querySelector("main");
  const column = article.getBoundingClientRect().width;
  const heads = el => [...el.querySelectorAll("th")].slice(0, 4).map(th => th.innerText.trim()).join(", ");
  const name = el => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "")
      + (el.getAttribute("src") ? " " + el.getAttribute("src") : "")
      + (el.tagName === "TABLE" ? ` [${heads(el)}, ...]` : "");
  const width = el => Math.max(el.getBoundingClientRect().width, el.scrollWidth);
  const withoutInputs = root => {
    const copy = root.cloneNode(true);
    copy.querySelectorAll(".cell_input, script, style").forEach(el => el.remove());
    return copy.innerText;
  };
  const math = [...article.querySelectorAll(".math")];
  const captionOf = img => (img.closest("figure") || {querySelector: () => null}).querySelector("figcaption");
  const scrollHint = caption => (caption ? getComputedStyle(caption, "::before").content : "none");
  const figures = [...article.querySelectorAll(".cell_output img")].map(img => {
    const box = img.closest(".cell_output");
    return {src: img.getAttribute("src"), natural: img.naturalWidth, shown: img.getBoundingClientRect().width,
            scrolls: Boolean(box) && box.scrollWidth > box.clientWidth + 1,
            hint: /scroll/.test(scrollHint(captionOf(img)))};
  });
  const widgetCells = [...article.querySelectorAll("div.cell")].filter(cell => {
    const input = cell.querySelector(".cell_input");
    return input && /\\bwidgets\\.|\\binteract(ive)?\\(/.test(input.innerText);
  });
  return {
    column,
    pageScrollsSideways: document.documentElement.scrollWidth > window.innerWidth + 1,
    brokenImages: [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(name),
    images: article.querySelectorAll(".cell_output img").length,
    tooWide: [...article.querySelectorAll("table, figure, img")]
        .filter(el => width(el) > column + 1).map(el => `${name(el)}: ${Math.round(width(el))} px`),
    text: withoutInputs(article),
    math: math.length,
    mathTypeset: math.filter(el => el.querySelector("mjx-container")).length,
    mathjaxFrom: [...document.scripts].map(s => s.src).filter(src => /mathjax/i.test(src)),
    figures,
    fallbackOutsideWidgetCells: [...article.querySelectorAll("div.cell")]
        .filter(cell => !widgetCells.includes(cell))
        .filter(cell => (cell.querySelector(".cell_output") || {innerText: ""}).innerText
                          .includes("[Interactive controls:")).length,
    outputText: [...article.querySelectorAll(".cell_output")].map(el => el.innerText).join("\\n"),
    widgetViews: article.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]').length,
    widgetCells: widgetCells.map(cell => {
      const output = cell.querySelector(".cell_output");
      const shown = output && output.getBoundingClientRect().height > 0
          && (output.innerText.trim().length > 0 || output.querySelector("img"));
      return {shown: Boolean(shown), text: output ? output.innerText.trim().slice(0, 200) : ""};
    }),
    uncaptioned: [...article.querySelectorAll(".cell_output img")].filter(img => {
      const figure = img.closest("figure");
      const caption = figure && figure.querySelector("figcaption");
      return !(caption && caption.innerText.trim());
    }).map(name),
  };
}"""


def _missing(reason: str):
    if os.environ.get("DDD_REQUIRE_BROWSER"):
        pytest.fail(f"{reason} (DDD_REQUIRE_BROWSER is set)")
    pytest.skip(reason)


def _browser_executable() -> str | None:
    named = os.environ.get("CHROMIUM")
    return named if named else next(filter(None, map(shutil.which, BROWSERS)), None)


@pytest.fixture(scope="module")
def site():
    """An HTTP server on the built book, and a Chromium page driven by Playwright."""
    if not (HTML / "index.html").is_file():
        _missing(f"no built book in {HTML}: run `make book` first")
    executable = _browser_executable()
    if executable is None:
        _missing(f"no Chromium found ({', '.join(BROWSERS)} or $CHROMIUM): apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Playwright for Python is not installed: pip install -e '.[dev]'")

    handler = functools.partial(_QuietHandler, directory=str(HTML))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    (SCREENSHOTS / "390").mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable)
        pages = {1280: browser.new_page(viewport=VIEWPORT), 390: browser.new_page(viewport=PHONE)}
        yield pages, f"http://127.0.0.1:{server.server_address[1]}"
        browser.close()
    server.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


_reports: dict[tuple[str, int], dict] = {}
#: Resolves when MathJax has typeset the page (at once on a page without MathJax).
MATH_DONE = "() => (window.MathJax && MathJax.startup && MathJax.startup.promise) || null"


def report(site, name: str, width: int = 1280) -> dict:
    """Open ``name`` once per width (a full-page screenshot in ``_build/screenshots``) and inspect it."""
    if (name, width) not in _reports:
        pages, base = site
        page = pages[width]
        if not (HTML / f"{name}.html").is_file():
            pytest.fail(f"{name}.html is missing from {HTML}")
        response = page.goto(f"{base}/{name}.html", wait_until="load")
        assert response is not None and response.ok, name
        page.evaluate("() => Promise.all([...document.images].map(i => i.decode().catch(() => null)))")
        page.evaluate(MATH_DONE)
        folder = SCREENSHOTS if width == 1280 else SCREENSHOTS / str(width)
        page.screenshot(path=str(folder / f"{Path(name).name}.png"), full_page=True)
        _reports[name, width] = page.evaluate(INSPECT)
    return _reports[name, width]


@pytest.mark.parametrize("name", PAGES)
def test_every_image_loads(site, name):
    assert report(site, name)["brokenImages"] == []


@pytest.mark.parametrize("name", PAGES)
def test_no_table_or_figure_is_wider_than_the_content_column(site, name):
    found = report(site, name)
    assert found["tooWide"] == [], f"content column {found['column']:.0f} px"
    assert not found["pageScrollsSideways"]


@pytest.mark.parametrize("name", PAGES)
def test_no_error_text_or_unrendered_glue(site, name):
    found = report(site, name)
    assert PAGE_ERRORS.findall(found["text"]) == []
    assert OUTPUT_ERRORS.findall(found["outputText"]) == []


@pytest.mark.parametrize("name", PAGES)
def test_widget_cells_show_their_static_fallback(site, name):
    found = report(site, name)
    assert found["widgetViews"] == 0, "a widget view the static page cannot render"
    assert all(cell["shown"] for cell in found["widgetCells"]), found["widgetCells"]
    assert not [cell["text"] for cell in found["widgetCells"] if WIDGET_REPR.search(cell["text"])]


@pytest.mark.parametrize("name", CAPTIONED_PAGES)
def test_every_figure_has_a_caption(site, name):
    assert report(site, name)["uncaptioned"] == []


def test_the_figures_of_the_book_are_there(site):
    """A page that lost its outputs would pass the checks above: count the output images."""
    counts = {name: report(site, name)["images"] for name in PAGES}
    assert counts["book/01_noise"] >= 2 and counts["book/02_training"] >= 1, counts


@pytest.mark.parametrize("name", PAGES)
def test_equations_are_typeset_by_the_mathjax_the_book_ships(site, name):
    found = report(site, name)
    assert found["mathTypeset"] == found["math"], f"{found['math'] - found['mathTypeset']} equations not typeset"
    assert RAW_TEX.findall(found["text"]) == []
    assert all(src.startswith(site[1]) for src in found["mathjaxFrom"]), found["mathjaxFrom"]


def test_the_equations_of_the_book_are_there(site):
    """A page whose math lost its markup would pass the check above: count the equations."""
    assert sum(report(site, name)["math"] for name in PAGES) >= 3


@pytest.mark.parametrize("name", PAGES)
def test_no_widget_fallback_where_no_widget_was_meant(site, name):
    assert report(site, name)["fallbackOutsideWidgetCells"] == 0


def figure_text_px(site, name: str, width: int) -> dict[str, tuple[float, str]]:
    """Per figure of the page at ``width``: the size its smallest text shows at, in CSS pixels (the
    figures' smallest font, ``MIN_FONT_PT`` at the PNG's dpi, times the scale the page shows the
    image at), and how that came about."""
    sizes = {}
    for figure in report(site, name, width)["figures"]:
        dpi = Image.open(HTML / Path(name).parent / figure["src"]).info.get("dpi", (72, 72))[0]
        text_px = MIN_FONT_PT / 72 * dpi * figure["shown"] / figure["natural"]
        sizes[figure["src"]] = (text_px, f"{figure['natural']} px shown at {figure['shown']:.0f}")
    return sizes


@pytest.mark.parametrize("name", PAGES)
def test_figure_text_is_at_least_the_stated_size_as_displayed(site, name):
    small = {src: f"{px:.1f} px ({how})" for src, (px, how) in figure_text_px(site, name, 1280).items()
             if px < MIN_TEXT_PX}
    assert small == {}


@pytest.mark.parametrize("name", PAGES)
def test_figure_text_is_readable_on_a_phone(site, name):
    """At 390 px a figure keeps its text at ``MIN_PHONE_TEXT_PX`` or more, scrolling inside its own box."""
    small = {src: f"{px:.1f} px ({how})" for src, (px, how) in figure_text_px(site, name, 390).items()
             if px < MIN_PHONE_TEXT_PX}
    assert small == {}


def test_the_smallest_figure_text_of_the_book(site):
    """One line per width for the log (``pytest -s``): the smallest figure text over all pages."""
    for width, minimum in ((1280, MIN_TEXT_PX), (390, MIN_PHONE_TEXT_PX)):
        sizes = [(px, f"{name}: {src}") for name in PAGES for src, (px, _) in figure_text_px(site, name, width).items()]
        assert sizes, "no figures measured"
        smallest = min(sizes)
        print(f"\nsmallest figure text at {width} px: {smallest[0]:.1f} px ({smallest[1]}; at least {minimum})")
        assert smallest[0] >= minimum


@pytest.mark.parametrize("name", PAGES)
def test_a_figure_that_scrolls_sideways_says_so_and_one_that_fits_does_not(site, name):
    """At 390 px the figures are wider than the column and their boxes scroll: each says so between
    the figure and its caption; at 1280 px none scrolls and none says it."""
    for width in (390, 1280):
        figures = report(site, name, width)["figures"]
        wrong = [f"{f['src']}: scrolls {f['scrolls']}, hint {f['hint']}" for f in figures
                 if f["scrolls"] != f["hint"]]
        assert wrong == [], width
        if width == 1280:
            assert not any(f["scrolls"] for f in figures)


@pytest.mark.parametrize("name", PAGES)
def test_a_phone_never_scrolls_the_page_sideways(site, name):
    """At 390 px a wide table may scroll inside its own box, but the page itself stays put."""
    assert not report(site, name, width=390)["pageScrollsSideways"]
