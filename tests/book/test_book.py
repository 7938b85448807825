"""The book: every chapter is a parameterised MyST notebook, and the runner builds the HTML."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest
import yaml
from jupytext.config import find_jupytext_configuration_file

from ddd_support.book import run as book
from ddd_support.book.normalise import jupytext_config, normal_form, normalise

ROOT = book.PROJECT_ROOT
CHAPTERS = [name for name in book.chapter_names() if book.is_notebook(ROOT / f"{name}.md")]
#: Figures each chapter shows at least (on the smoke profile, three models; figures with one panel per
#: model count once).
MIN_FIGURES = {"book/01_noise": 2, "book/02_training": 1, "book/03_loss_decomposition": 6,
               "book/04_separation": 3, "book/05_large_activation": 6,
               "book/07_sweeps": 3, "book/08_scale_map": 4}
#: Chapters whose parameters are typed (shown by `papermill --help-notebook`) and checked with
#: `ddd_support.book.parameters` in the cell after the parameters cell.
CHECKED_PARAMETERS = ["book/intro", "book/01_noise", "book/02_training", "book/03_loss_decomposition",
                      "book/04_separation", "book/05_large_activation", "book/06_conclusions", "book/07_sweeps",
                      "book/08_scale_map", "book/appendix_reproducibility"]


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


#: Chapters that read a sweep (``sweep_dir``), not the runs of one profile.
SWEEP_CHAPTERS = ["book/07_sweeps", "book/08_scale_map"]
PROFILE_CHAPTERS = [name for name in CHAPTERS if name not in SWEEP_CHAPTERS]


@pytest.mark.parametrize("name", PROFILE_CHAPTERS)
def test_chapter_takes_a_profile(name):
    assert "profile" in book.declared_parameters(jupytext.read(ROOT / f"{name}.md"))


@pytest.mark.parametrize("name", SWEEP_CHAPTERS)
def test_sweep_chapter_takes_a_sweep_folder_and_no_profile(name):
    declared = book.declared_parameters(jupytext.read(ROOT / f"{name}.md"))
    assert "sweep_dir" in declared and not declared & {"profile", "run_root", "run_dirs"}


def test_chapters_after_training_take_a_run_root():
    later = [n for n in PROFILE_CHAPTERS[PROFILE_CHAPTERS.index("book/02_training"):]]
    for name in later:
        assert "run_root" in book.declared_parameters(jupytext.read(ROOT / f"{name}.md")), name


def parameters_cell(name: str):
    return next(c for c in jupytext.read(ROOT / f"{name}.md").cells if "parameters" in tags(c))


@pytest.mark.parametrize("name", CHAPTERS)
def test_papermill_reads_every_assignment_of_the_parameters_cell(name):
    tree = ast.parse(parameters_cell(name).source)
    assigned = [node.targets[0].id if isinstance(node, ast.Assign) else node.target.id
                for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))]
    assert sorted(book.declared_parameters(jupytext.read(ROOT / f"{name}.md"))) == sorted(assigned)


@pytest.mark.parametrize("name", CHECKED_PARAMETERS)
def test_parameters_carry_type_hints_that_papermill_shows(name):
    import papermill

    found = papermill.inspect_notebook(jupytext.read(ROOT / f"{name}.md"))
    assert found and all(p["inferred_type_name"] != "None" for p in found.values()), found


@pytest.mark.parametrize("name", CHECKED_PARAMETERS)
def test_the_cell_after_the_parameters_checks_every_parameter(name):
    code = [c for c in jupytext.read(ROOT / f"{name}.md").cells if c.cell_type == "code"]
    checks = code[1].source
    assert "from ddd_support.book.parameters import" in checks
    for parameter in book.declared_parameters(jupytext.read(ROOT / f"{name}.md")):
        assert re.search(rf"^{parameter} = \w+\(", checks, re.M), parameter


@pytest.mark.parametrize("raw", ["30", "-2", "0.5", "1e-4", "True", "False", "None", "mlp7", "[0, 1]",
                                 "{epochs: 30}", "../runs", ""])
def test_p_values_are_read_exactly_as_papermill_reads_them(raw):
    from papermill.cli import _resolve_type

    value = book.parse_value(raw)
    assert value == _resolve_type(raw) and type(value) is type(_resolve_type(raw))


def test_lists_and_dicts_come_through_yaml():
    assert book.collect_parameters(yamls=["seeds: [0, 1]", "overrides: {epochs: 30}"]) == {
        "seeds": [0, 1], "overrides": {"epochs": 30}}


def test_a_list_given_with_p_is_refused_naming_the_yaml_option():
    with pytest.raises(book.BookError, match=r'-y "seeds: \[0, 1\]"'):
        book.collect_parameters(params=[("seeds", "[0, 1]")])


def test_parameter_sources_apply_in_papermills_order(tmp_path):
    file = tmp_path / "params.yml"
    file.write_text("n_show: 1\nseeds: [5]\nprofile: cpu\n")
    params = book.collect_parameters(files=[str(file)], yamls=["n_show: 2\nseeds: [6]"],
                                     params=[("n_show", "3")], raws=[("profile", "3")])
    assert params == {"n_show": 3, "seeds": [6], "profile": "3"}


def test_a_yaml_parameter_that_is_not_a_mapping_is_refused():
    with pytest.raises(book.BookError, match="expected a YAML mapping"):
        book.collect_parameters(yamls=["[0, 1]"])


def test_without_a_repository_url_the_buttons_that_need_one_are_off():
    config = book.book_config(ROOT, None)
    assert config["repository"]["url"] == ""
    assert not config["html"]["use_repository_button"] and not config["html"]["use_issues_button"]
    assert config["launch_buttons"]["binderhub_url"] == ""


def test_a_repository_url_turns_on_repository_and_binder_buttons():
    config = book.book_config(ROOT, "https://github.com/someone/fork/", "gh-pages-test")
    assert config["repository"] == {**config["repository"], "url": "https://github.com/someone/fork",
                                     "branch": "gh-pages-test"}
    assert config["html"]["use_repository_button"]
    assert config["launch_buttons"]["binderhub_url"] and config["launch_buttons"]["notebook_interface"] == "jupyterlab"


def test_a_repository_that_is_not_a_url_is_refused():
    with pytest.raises(book.BookError, match="not a URL"):
        book.book_config(ROOT, "someone/fork")


def test_the_committed_config_names_no_repository():
    committed = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert not committed.get("repository", {}).get("url")


def test_the_staged_config_takes_the_repository_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(book.REPOSITORY_URL_ENV, "https://github.com/someone/fork")
    book.stage_source(ROOT, tmp_path, *book.repository_from_env())
    staged = yaml.safe_load((tmp_path / "_config.yml").read_text())
    assert staged["repository"]["url"] == "https://github.com/someone/fork"
    assert (tmp_path / "README.md").is_file() and (tmp_path / "_toc.yml").is_file()


def test_html_preparation_hides_injected_parameters_and_gives_widgets_a_fallback(tmp_path):
    nb = nbformat.v4.new_notebook(metadata={"widgets": {"state": {}}})
    nb.cells = [nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("x = 2", metadata={"tags": ["injected-parameters"]}),
                nbformat.v4.new_code_cell("interact(f)", outputs=[nbformat.v4.new_output(
                    "display_data", data={book.WIDGET_VIEW_MIME: {"model_id": "1"}, "text/plain": "VBox()"})])]
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    book.prepare_for_html(path)
    done = nbformat.read(path, as_version=4)
    assert [c.metadata.get("tags") for c in done.cells[:2]] == [["parameters"],
                                                                 ["injected-parameters", "remove-cell"]]
    assert done.cells[2].outputs[0]["data"]["text/plain"] == book.WIDGET_FALLBACK
    assert "widgets" not in done.metadata


def test_the_html_renders_the_widget_fallback_not_the_widget():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    overrides = config["sphinx"]["config"]["nb_mime_priority_overrides"]
    assert ["*", book.WIDGET_VIEW_MIME, None] in overrides


def test_help_examples_use_only_declared_parameters():
    declared = set().union(*(book.declared_parameters(jupytext.read(ROOT / f"{n}.md")) for n in CHAPTERS))
    used = re.findall(r"-p ([a-z_]+) ", book.EXAMPLES + book.build_parser().format_help())
    used += re.findall(r'-y "(\w+):', book.EXAMPLES)
    assert used and set(used) <= declared, set(used) - declared


def test_analysis_chapters_keep_their_reference_unless_fresh():
    common = {"profile": "smoke", "run_root": "runs", "seeds": [0], "threshold": 50.0}
    analysis = {"profile", "run_root", "seeds", "run_dirs", "threshold"}
    training = {"profile", "run_root", "seeds"}
    assert book.chapter_parameters(analysis, common, fresh=False) == {"threshold": 50.0}
    assert book.chapter_parameters(analysis, common, fresh=True) == common
    assert book.chapter_parameters(training, common, fresh=False) == {"profile": "smoke", "run_root": "runs",
                                                                      "seeds": [0]}


def test_analysis_chapters_default_to_the_committed_reference():
    later = PROFILE_CHAPTERS[PROFILE_CHAPTERS.index("book/02_training") + 1:]
    for name in SWEEP_CHAPTERS:
        assert papermill_defaults(name)["sweep_dir"] is None, name  # None: the reference sweep
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
def test_the_built_book_has_every_chapter_and_its_figures():
    """The book `make book` built (CI: `make book FRESH=1`, then `make book-test`): every page, its
    figures and executed notebook; with ``DDD_BOOK_FRESH=1``, the analysis chapters read the runs
    chapter 02 trained, not the reference."""
    root = book.PROJECT_ROOT / "_build"
    html = root / "html"
    if not (html / "index.html").is_file():
        if os.environ.get("DDD_REQUIRE_BROWSER"):
            pytest.fail("no built book in _build/html: run `make book` first")
        pytest.skip("no built book in _build/html: run `make book` first")
    for name in book.chapter_names():
        page = html / f"{name}.html"
        assert page.is_file(), name
        images = re.findall(r'<img[^>]+src="([^"]+)"', page.read_text())
        assert len(images) >= MIN_FIGURES.get(name, 0), (name, len(images))
        for src in images:
            assert (page.parent / src).resolve().is_file(), (name, src)
    for name in CHAPTERS:
        assert (root / "executed" / f"{name}.ipynb").is_file()
    if os.environ.get("DDD_BOOK_FRESH"):
        executed = root / "executed" / "book"
        assert (book.PROJECT_ROOT / "runs" / "smoke" / "mlp7" / "seed0" / "config.json").is_file()
        assert "1 seed(s), 40 epochs" in (executed / "03_loss_decomposition.ipynb").read_text()
        assert "profile 'smoke', 40 epochs, 2000 training images, 1 seed(s)" in (
            executed / "06_conclusions.ipynb").read_text()  # the fresh runs, not the reference


# --- JupyterLab keeps the chapters as committed -------------------------------------------------

@pytest.mark.parametrize("name", CHAPTERS)
def test_saving_the_chapter_in_jupyterlab_leaves_it_unchanged(name):
    """A jupytext round trip as JupyterLab does it (read, run with ipykernel, save with the
    configuration it finds); ``python -m ddd_support.book --normalise`` fixes a chapter that fails."""
    path = ROOT / f"{name}.md"
    assert normal_form(path) == path.read_text()


def test_jupyterlab_finds_the_jupytext_configuration_from_its_root():
    """``make lab`` serves book/, and jupytext looks for its configuration from the chapter's
    folder upwards only as far as the server's root: the file must be inside book/."""
    found = Path(find_jupytext_configuration_file(str(ROOT / "book")))
    assert found.parent == ROOT / "book"
    assert "jupyter lab book/" in (ROOT / "Makefile").read_text()
    config = jupytext_config(ROOT / "book" / "01_noise.md")
    assert "-jupytext.text_representation.jupytext_version" in config.notebook_metadata_filter


def test_normalise_rewrites_a_chapter_lab_would_change_and_check_only_reports(tmp_path):
    chapter = ROOT / "book" / "01_noise.md"
    (tmp_path / "jupytext.toml").write_text((ROOT / "book" / "jupytext.toml").read_text())
    copy = tmp_path / "01_noise.md"
    copy.write_text(normal_form(chapter).replace("display_name: Python 3 (ipykernel)", "display_name: Python 3"))
    before = copy.read_text()
    assert normalise([copy], check=True) == [copy] and copy.read_text() == before
    assert normalise([copy]) == [copy]
    assert copy.read_text() == normal_form(chapter) and normalise([copy]) == []


# --- the runner's exit statuses and where it runs ------------------------------------------------

def run_runner(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ddd_support.book", *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


def test_usage_errors_exit_with_status_2_and_one_line():
    for args in (["--profile", "nonsense", "--no-html"], ["-p", "seeds", "[0, 1]"], ["--check"]):
        result = run_runner(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr


def test_without_the_book_sources_the_runner_refuses_in_one_line(tmp_path, capsys):
    with pytest.raises(book.BookError, match="clone of the repository"):
        book.require_checkout(tmp_path)
    book.require_checkout(ROOT)


def test_an_installed_copy_without_the_sources_exits_1_saying_what_to_do(tmp_path):
    """What a non-editable install meets: the package without _toc.yml, book/ and reference/ beside it."""
    shutil.copytree(ROOT / "ddd_support", tmp_path / "site-packages" / "ddd_support",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site-packages")}
    result = subprocess.run([sys.executable, "-m", "ddd_support.book", "--no-html"], capture_output=True,
                            text=True, timeout=120, cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "pip install -e" in result.stderr, result.stderr


@pytest.mark.book
def test_a_progress_bar_shows_its_last_state_as_text_not_the_widget_fallback(tmp_path):
    """tqdm.auto draws widgets in the papermill kernel; the built book shows where each bar ended."""
    chapter = tmp_path / "bars.md"
    chapter.write_text((ROOT / "book" / "intro.md").read_text().split("# ", 1)[0]
                       + "# Bars\n\n```{code-cell} ipython3\n:tags: [parameters]\n\nn = 3\n```\n\n"
                       "```{code-cell} ipython3\nimport ipywidgets\nfrom tqdm.auto import tqdm\n"
                       "for _ in tqdm(range(n), desc='mlp3'):\n    pass\nipywidgets.IntSlider()\n```\n")
    out = tmp_path / "bars.ipynb"
    book.execute_chapter(chapter, out, {"n": 5}, tmp_path, timeout=120)
    shown = [o["data"]["text/plain"] for cell in nbformat.read(out, as_version=4).cells
             for o in cell.get("outputs", []) if book.WIDGET_VIEW_MIME in o.get("data", {})]
    assert len(shown) == 2
    assert re.fullmatch(r"mlp3: 100% 5/5 \[.*\]", shown[0]), shown[0]
    assert shown[1] == book.WIDGET_FALLBACK  # a widget that is not a progress bar
