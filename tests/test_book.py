"""The book: every chapter is a parameterised MyST notebook, and the runner builds the HTML."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import jupytext
import pytest

from ddd_support import book
from ddd_support.data import DATA_ROOT_ENV

ROOT = book.PROJECT_ROOT
CHAPTERS = [name for name in book.chapter_names() if book.is_notebook(ROOT / f"{name}.md")]
#: Figures each chapter shows at least (on the smoke profile, three models).
MIN_FIGURES = {"book/01_noise": 2, "book/02_training": 1, "book/03_loss_decomposition": 9,
               "book/04_separation": 10, "book/05_large_activation": 11}


def tags(cell) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def test_every_toc_entry_has_a_source_file():
    missing = [name for name in book.chapter_names() if not (ROOT / f"{name}.md").is_file()]
    assert missing == []


@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_is_a_myst_notebook_for_the_python3_kernel(name):
    notebook = jupytext.read(ROOT / f"{name}.md")
    assert notebook.metadata["jupytext"]["text_representation"]["format_name"] == "myst"
    assert notebook.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_has_one_parameters_cell_before_any_other_code(name):
    code = [c for c in jupytext.read(ROOT / f"{name}.md").cells if c.cell_type == "code"]
    assert [i for i, c in enumerate(code) if "parameters" in tags(c)] == [0]


@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_takes_a_profile(name):
    assert "profile" in book.declared_parameters(jupytext.read(ROOT / f"{name}.md"))


def test_chapters_after_training_take_a_run_root():
    later = CHAPTERS[CHAPTERS.index("book/02_training"):]
    for name in later:
        assert "run_root" in book.declared_parameters(jupytext.read(ROOT / f"{name}.md")), name


def test_parameter_values_are_read_as_yaml():
    assert book.parse_value("30") == 30
    assert book.parse_value("[0, 1]") == [0, 1]
    assert book.parse_value("{epochs: 30}") == {"epochs": 30}
    assert book.parse_value("mlp7") == "mlp7"


def test_analysis_chapters_keep_their_reference_unless_fresh():
    common = {"profile": "smoke", "run_root": "runs", "seeds": [0], "threshold": 50.0}
    analysis = {"profile", "run_root", "seeds", "run_dirs", "threshold"}
    training = {"profile", "run_root", "seeds"}
    assert book.chapter_parameters(analysis, common, fresh=False) == {"threshold": 50.0}
    assert book.chapter_parameters(analysis, common, fresh=True) == common
    assert book.chapter_parameters(training, common, fresh=False) == {"profile": "smoke", "run_root": "runs",
                                                                      "seeds": [0]}


def test_analysis_chapters_default_to_the_committed_reference():
    later = CHAPTERS[CHAPTERS.index("book/02_training") + 1:]
    for name in later:
        params = papermill_defaults(name)
        assert "run_dirs" in params and params["run_root"] is None, name
        if "seeds" in params:
            assert (params["profile"], params["seeds"]) == ("cpu", [0, 1, 2]), name
    assert sum("seeds" in papermill_defaults(name) for name in later) == 4


def papermill_defaults(name: str) -> dict:
    import papermill

    found = papermill.inspect_notebook(jupytext.read(ROOT / f"{name}.md"))
    return {k: eval(v["default"]) for k, v in found.items()}


def test_a_parameter_no_chapter_declares_is_rejected(tmp_path):
    with pytest.raises(book.BookError, match="no_such_parameter"):
        book.run_book("smoke", {"no_such_parameter": 1}, out=tmp_path)


def test_an_unknown_profile_is_rejected(tmp_path):
    with pytest.raises(book.BookError, match="unknown profile"):
        book.run_book("nonsense", out=tmp_path)


@pytest.mark.book
def test_a_failing_cell_fails_the_chapter(tmp_path):
    broken = tmp_path / "broken.md"
    broken.write_text((ROOT / "book" / "intro.md").read_text().split("# ", 1)[0]
                      + "# Broken\n\n```{code-cell} ipython3\n:tags: [parameters]\n\nx = 1\n```\n\n"
                      "```{code-cell} ipython3\nraise ValueError('this cell is broken')\n```\n")
    with pytest.raises(book.BookError, match="ValueError: this cell is broken"):
        book.execute_chapter(broken, tmp_path / "out" / "broken.ipynb", {"x": 2}, tmp_path, timeout=120)
    assert (tmp_path / "out" / "broken.ipynb").exists()


@pytest.mark.book
@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get(DATA_ROOT_ENV), reason=f"needs CIFAR-10: set {DATA_ROOT_ENV}")
def test_smoke_book_builds_html_with_every_chapter_and_its_figures(tmp_path):
    result = subprocess.run([sys.executable, "-m", "ddd_support.book", "--profile", "smoke", "--fresh",
                             "--out", str(tmp_path)], capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    html = tmp_path / "_build" / "html"
    assert (html / "index.html").is_file()
    for name in book.chapter_names():
        page = html / f"{name}.html"
        assert page.is_file(), name
        images = re.findall(r'<img[^>]+src="([^"]+)"', page.read_text())
        assert len(images) >= MIN_FIGURES.get(name, 0), (name, len(images))
        for src in images:
            assert (page.parent / src).resolve().is_file(), (name, src)
    for name in CHAPTERS:
        assert (tmp_path / "_build" / "executed" / f"{name}.ipynb").is_file()
    assert (tmp_path / "runs" / "smoke" / "mlp7" / "seed0" / "config.json").is_file()
    executed = tmp_path / "_build" / "executed" / "book"
    assert "1 seed(s), 40 epochs" in (executed / "03_loss_decomposition.ipynb").read_text()
    assert "profile 'smoke', 40 epochs, 2000 training images, 1 seed(s)" in (
        executed / "06_conclusions.ipynb").read_text()  # the fresh runs, not the reference
