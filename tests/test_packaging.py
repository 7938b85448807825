"""Package hygiene: one version, an MIT license the metadata names, a citation of book and paper,
dependencies that fit each use, a console script that clashes with nothing."""

import re
import subprocess
import sys

import pytest
import yaml

from ddd_support import __version__
from ddd_support.cli import main

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


def requirement_names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\[<>=!~; ]", r, maxsplit=1)[0].lower() for r in requirements}


def test_training_needs_neither_jupyter_nor_dask():
    core = requirement_names(PYPROJECT["project"]["dependencies"])
    assert {"torch", "torchvision", "numpy", "pandas", "matplotlib", "tqdm"} <= core
    assert not core & {"dask", "distributed", "jupyter-book", "papermill", "jupyterlab", "pytest"}
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert requirement_names(extras["sweep"]) == {"dask"}
    assert {"jupyterlab-myst", "sphinx-mathjax-offline"} <= requirement_names(extras["book"])


def test_the_console_script_is_not_named_like_debians_debugger():
    assert PYPROJECT["project"]["scripts"] == {"ddd-support": "ddd_support.cli:main"}


def test_the_sweep_command_without_dask_names_the_extra_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed raises ImportError
    code = main(["sweep", "--name", "x", "--profile", "smoke", "--grid", "seed=0", "--out", str(tmp_path)])
    assert code == 1
    assert 'pip install "ddd_support[sweep]"' in capsys.readouterr().err
    assert not list(tmp_path.rglob("config.json"))  # nothing trained


def test_jupyterlab_loads_the_myst_renderer():
    """jupyterlab-myst renders glue roles and {doc} links in JupyterLab, if its JupyterLab can load it."""
    pytest.importorskip("jupyterlab_myst", reason="the book extra is not installed")
    listed = subprocess.run([sys.executable, "-m", "jupyter", "labextension", "list"], capture_output=True,
                            text=True, timeout=120)
    line = next(line for line in (listed.stdout + listed.stderr).splitlines() if "jupyterlab-myst" in line)
    assert "OK" in line and "not compatible" not in listed.stdout + listed.stderr, line
