"""Package hygiene: one version, an MIT license the metadata names, a citation of book and paper."""

import pytest
import yaml

from ddd_support import __version__

from .conftest import REPO

tomllib = pytest.importorskip("tomllib", reason="tomllib needs Python 3.11")
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def test_the_license_is_mit_in_the_file_and_the_metadata():
    assert (REPO / "LICENSE").read_text().startswith("MIT License")
    assert PYPROJECT["project"]["license"] == "MIT"
    assert PYPROJECT["project"]["license-files"] == ["LICENSE"]


def test_the_version_is_written_once_in_the_package():
    assert "version" in PYPROJECT["project"]["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "ddd_support.__version__"}


def test_the_citation_cites_this_version_of_the_book_and_the_paper():
    citation = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0" and citation["version"] == __version__
    assert citation["license"] == "MIT"
    paper = citation["references"][0]
    assert [a["family-names"] for a in paper["authors"]] == ["Kubo", "Uda", "Iida"]
    assert paper["year"] == 2026 and paper["url"] == "https://arxiv.org/abs/2601.08316"
    assert "Signal Separation, Large Activation, and Benign Overfitting" in " ".join(paper["title"].split())
