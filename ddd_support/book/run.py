"""Run the book: execute every chapter in order with papermill, then build the HTML.

    python -m ddd_support.book                      # 01-02 train smoke; 03-06 read the reference
    python -m ddd_support.book --fresh              # 03-06 analyse the runs 02 just trained
    python -m ddd_support.book --profile cpu --fresh -y "seeds: [0, 1, 2]"

Steps, each printed on the console as it happens:

1. read the chapter order from ``_toc.yml``;
2. convert each MyST-markdown chapter ``book/<name>.md`` to a notebook (jupytext);
3. execute it with papermill (kernel ``python3``, working directory ``--out``), passing
   ``profile``, ``run_root`` and every parameter given with ``-p``, ``-r``, ``-y`` or ``-f``
   (read as papermill reads them, see ``collect_parameters``) that the chapter declares in its
   ``parameters`` cell. The analysis chapters (those that declare ``run_dirs``) keep their
   own run selection (the committed reference in ``reference/``) unless ``--fresh`` is given;
   with ``--fresh`` they analyse the runs of ``--profile`` under ``--runs`` (seed 0 unless
   ``seeds`` says otherwise). The executed notebook is written to
   ``<out>/_build/executed/book/<name>.ipynb``, even when a cell fails; papermill's
   injected-parameters cell is tagged ``remove-cell`` (hidden in the HTML) and widget outputs get a
   static text fallback;
4. copy ``_config.yml`` (with the repository URL of ``DDD_REPOSITORY_URL``, see
   ``book_config``), ``_toc.yml``, ``README.md`` and the non-notebook files of ``book/`` next to
   the executed notebooks, so ``<out>/_build/executed`` is a complete book source;
5. ``jupyter-book build`` that source with execution off and warnings as errors
   (``-W --keep-going``); the HTML lands in ``<out>/_build/html``.

Any failing cell, or any Sphinx warning, ends the run with a non-zero exit status.
This module only orchestrates: what a chapter computes lives in the chapter and the package.
"""

from __future__ import annotations

import argparse
import html
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterable

import yaml

from ddd_support.config import PROFILES
from ddd_support.book.normalise import normalise
from ddd_support.book.locations import REFERENCE_INDEX, REFERENCE_ROOT, is_reference_root

#: The project root: where ``_config.yml``, ``_toc.yml`` and ``book/`` live.
PROJECT_ROOT = Path(__file__).resolve().parents[2]
#: Parameters that choose which runs a chapter trains or reads: the analysis chapters get them
#: only with ``fresh`` (otherwise they read the reference their parameters cell names).
RUN_SELECTION = ("profile", "run_root", "seeds", "models", "overrides")
#: A chapter that declares this parameter analyses runs (rather than training them).
ANALYSIS_MARKER = "run_dirs"
#: Environment variables naming the repository the book links to (its repository, issues and
#: launch buttons); the publishing workflow sets them from the GitHub Actions context.
REPOSITORY_URL_ENV = "DDD_REPOSITORY_URL"
REPOSITORY_BRANCH_ENV = "DDD_REPOSITORY_BRANCH"
#: Keys of ``launch_buttons`` that name a service; blanked when no repository URL is known.
LAUNCH_SERVICES = ("binderhub_url", "jupyterhub_url", "colab_url", "deepnote_url", "jupyterlite_url")
#: What the HTML shows instead of an interactive widget (a static page has no kernel to drive it).
WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE_MIME = "application/vnd.jupyter.widget-state+json"
WIDGET_FALLBACK = ("[Interactive controls: open this chapter as a notebook (download or launch button at "
                   "the top of the page) and run it to use them.]")
#: Exit statuses, as the ``ddd-support`` command has them.
EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


class BookError(RuntimeError):
    """The book could not be executed or built; the message says which chapter or step."""


class BookUsageError(BookError):
    """The command was given something it cannot use (a profile, chapter or parameter); exit status 2."""


def require_checkout(root: Path = PROJECT_ROOT) -> None:
    """Refuse to run unless ``root`` holds the book's sources: the runner needs the repository
    (chapters, ``_toc.yml``, ``reference/``), which an installed wheel does not contain."""
    if not (root / "_toc.yml").is_file() or not (root / "book").is_dir():
        raise BookError(f"no book sources next to the package ({root} has no _toc.yml and book/): the book "
                        "runs from a clone of the repository installed in place; clone it and run "
                        "`pip install -e \".[book]\"` there, then `python -m ddd_support.book` from the clone")


def chapter_names(root: Path = PROJECT_ROOT) -> list[str]:
    """Chapter files (``book/<name>``, no suffix) in table-of-contents order."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    names = [toc["root"]]

    def walk(entries: Iterable[dict[str, Any]]) -> None:
        for entry in entries:
            if "file" in entry:
                names.append(entry["file"])
            walk(entry.get("sections", []))

    for part in toc.get("parts", []):
        walk(part.get("chapters", []))
    walk(toc.get("chapters", []))
    return names


def is_notebook(path: Path) -> bool:
    """True for a MyST-markdown notebook: a ``.md`` file whose front matter has a jupytext header."""
    if path.suffix != ".md" or not path.is_file():
        return False
    text = path.read_text()
    return text.startswith("---") and "jupytext:" in text.split("---", 2)[1]


def parse_value(raw: str) -> Any:
    """A ``-p`` value read as papermill's ``-p`` reads it: ``True``, ``False``, ``None``, an int or a
    float, and otherwise the string itself (``[0, 1]`` stays a string: lists and dicts go by ``-y``)."""
    if raw in ("True", "False", "None"):
        return {"True": True, "False": False, "None": None}[raw]
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return raw


def collect_parameters(files: Iterable[str] = (), yamls: Iterable[str] = (),
                       params: Iterable[tuple[str, str]] = (),
                       raws: Iterable[tuple[str, str]] = ()) -> dict[str, Any]:
    """Parameters from papermill's four options, later ones winning as in papermill: ``-f`` YAML
    files, ``-y`` YAML strings, ``-p KEY VALUE`` (see ``parse_value``), ``-r KEY VALUE`` (raw string).

    A ``-p`` value that looks like a YAML list or dict is refused, since papermill would pass the
    string: ``-p seeds "[0, 1]"`` names ``-y "seeds: [0, 1]"`` instead.
    """
    out: dict[str, Any] = {}
    sources = [(f"-f {f}", Path(f).read_text() if Path(f).is_file() else None) for f in files]
    sources += [(f"-y {y!r}", y) for y in yamls]
    for where, text in sources:
        if text is None:
            raise BookUsageError(f"{where}: no such file")
        try:
            value = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise BookUsageError(f"{where}: not valid YAML ({exc.__class__.__name__})") from None
        if not isinstance(value, dict):
            raise BookUsageError(f"{where}: expected a YAML mapping such as \"seeds: [0, 1]\"")
        out.update(value)
    for key, raw in params:
        if raw.strip()[:1] in ("[", "{"):
            raise BookUsageError(f"-p {key} {raw!r} would pass the string {raw!r}, as papermill's -p does; "
                            f"pass lists and dicts as YAML: -y \"{key}: {raw.strip()}\"")
        out[key] = parse_value(raw)
    out.update(dict(raws))
    return out


def declared_parameters(notebook: Any) -> set[str]:
    """Names assigned in the chapter's ``parameters`` cell."""
    import papermill

    return set(papermill.inspect_notebook(notebook))


def repository_from_env() -> tuple[str | None, str | None]:
    """The book's repository URL and branch, from ``DDD_REPOSITORY_URL`` and ``DDD_REPOSITORY_BRANCH``."""
    return os.environ.get(REPOSITORY_URL_ENV) or None, os.environ.get(REPOSITORY_BRANCH_ENV) or None


def book_config(root: Path = PROJECT_ROOT, repository_url: str | None = None,
                branch: str | None = None) -> dict[str, Any]:
    """``_config.yml`` with the repository filled in. A URL turns the repository, issues and launch
    buttons on; without one they are turned off (Jupyter Book would point them at its own repository)."""
    config = yaml.safe_load((root / "_config.yml").read_text())
    html = config.setdefault("html", {})
    repository = config.setdefault("repository", {})
    if repository_url:
        if not repository_url.startswith(("https://", "http://")):
            raise BookUsageError(f"{REPOSITORY_URL_ENV}={repository_url!r} is not a URL; expected e.g. "
                            "https://github.com/OWNER/REPOSITORY")
        repository.update(url=repository_url.rstrip("/"), branch=branch or repository.get("branch") or "main")
    else:
        repository["url"] = ""
        for key in ("use_repository_button", "use_issues_button", "use_edit_page_button"):
            html[key] = False
        launch = config.setdefault("launch_buttons", {})
        for key in LAUNCH_SERVICES:
            if key in launch:
                launch[key] = ""
    return config


def stage_source(root: Path, source: Path, repository_url: str | None = None,
                 branch: str | None = None) -> None:
    """Copy the book configuration (see ``book_config``), ``README.md`` (the appendix includes its
    commands) and everything in ``book/`` but the notebooks into ``source``."""
    (source / "book").mkdir(parents=True, exist_ok=True)
    config = yaml.safe_dump(book_config(root, repository_url, branch), sort_keys=False)
    (source / "_config.yml").write_text(f"# Written by ddd_support.book from {root / '_config.yml'}\n{config}")
    for name in ("_toc.yml", "README.md"):
        shutil.copy2(root / name, source / name)
    for path in sorted((root / "book").iterdir()):
        if path.is_dir() and not path.name.startswith("."):
            shutil.copytree(path, source / "book" / path.name, dirs_exist_ok=True)
        elif path.is_file() and path.suffix != ".ipynb" and not is_notebook(path):
            shutil.copy2(path, source / "book" / path.name)


def execute_chapter(md_path: Path, out_path: Path, parameters: dict[str, Any], cwd: Path,
                    timeout: int | None) -> float:
    """Execute one chapter; returns wall seconds. Raises BookError naming the failing cell."""
    import jupytext
    import papermill

    out_path.parent.mkdir(parents=True, exist_ok=True)
    source = out_path.with_suffix(".source.ipynb")
    jupytext.write(jupytext.read(md_path), source)
    t0 = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(source), str(out_path), parameters=parameters, kernel_name="python3",
            cwd=str(cwd), progress_bar=sys.stderr.isatty(), execution_timeout=timeout,
        )
    except papermill.PapermillExecutionError as exc:
        raise BookError(f"{md_path.name}: cell {exc.exec_count} raised {exc.ename}: {exc.evalue}\n"
                        f"the executed notebook with the error is {out_path}") from None
    finally:
        source.unlink(missing_ok=True)
        if out_path.exists():
            prepare_for_html(out_path)
    return time.perf_counter() - t0


def prepare_for_html(path: Path) -> None:
    """Hide papermill's injected-parameters cell in the HTML (tag ``remove-cell``), give widget
    outputs a text fallback (``_config.yml`` renders that instead of the widget: a progress bar's
    last state as text, any other widget ``WIDGET_FALLBACK``) and drop the saved widget state,
    which a static page cannot use."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE_MIME, {}).get("state", {})
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            cell.metadata["tags"] = [*tags, "remove-cell"]
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get(WIDGET_VIEW_MIME)
            if view is not None:
                output["data"]["text/plain"] = progress_text(view.get("model_id"), state) or WIDGET_FALLBACK
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, path)


def progress_text(model_id: str | None, state: dict[str, Any]) -> str | None:
    """The last state of a tqdm notebook progress bar (an HBox of HTML, FloatProgress, HTML) as one
    line of text, e.g. ``mlp3: 100% 40/40 [00:12<00:00, 3.3it/s]``; None for any other widget."""
    def model(ref: str) -> dict[str, Any]:
        return state.get(ref.removeprefix("IPY_MODEL_"), {})

    box = state.get(model_id or "", {})
    children = [model(ref) for ref in box.get("state", {}).get("children", [])]
    kinds = [child.get("model_name") for child in children]
    if box.get("model_name") != "HBoxModel" or kinds != ["HTMLModel", "FloatProgressModel", "HTMLModel"]:
        return None
    left, right = (html.unescape(re.sub(r"<[^>]+>", "", children[i]["state"].get("value", ""))).strip()
                   for i in (0, 2))
    return " ".join(f"{left} {right}".replace("\u2007", " ").split())  # tqdm pads with figure spaces


def build_html(source: Path, out: Path) -> None:
    """``jupyter-book build`` with execution off and warnings as errors; HTML in ``out/_build/html``."""
    cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", str(source),
           "--path-output", str(out), "--all", "-W", "--keep-going"]
    log_path = out / "_build" / "sphinx.log"
    with open(log_path, "w") as log:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        log.write(proc.stdout)
    problems = [line for line in proc.stdout.splitlines()
                if "WARNING" in line or "ERROR" in line or "Traceback" in line]
    for line in problems:
        print(f"  {line}", flush=True)
    if proc.returncode != 0 or problems:
        raise BookError(f"jupyter-book build failed ({len(problems)} warning/error lines, "
                        f"exit status {proc.returncode}); full log: {log_path}")


def run_book(profile: str = "smoke", parameters: dict[str, Any] | None = None,
             out: str | os.PathLike = PROJECT_ROOT, runs: str | os.PathLike | None = None,
             chapters: Iterable[str] | None = None, html: bool = True, timeout: int | None = None,
             root: Path = PROJECT_ROOT, execute: bool = True, fresh: bool = False,
             repository_url: str | None = None, branch: str | None = None) -> Path:
    """Execute the chapters in order and build the HTML; returns the HTML folder.

    Without ``fresh`` the analysis chapters read the committed reference runs; with it they
    analyse the runs of ``profile`` that the training chapter writes under ``runs``.
    ``repository_url`` and ``branch`` (default: ``repository_from_env()``) make the buttons.
    """
    if profile not in PROFILES:
        raise BookUsageError(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    out = Path(out).resolve()
    runs = Path(runs).resolve() if runs else out / "runs"
    run_root = os.path.relpath(runs, out) if runs.is_relative_to(out) else str(runs)
    source = out / "_build" / "executed"
    names = chapter_names(root)
    if chapters:
        unknown = sorted(set(chapters) - {Path(n).name for n in names})
        if unknown:
            raise BookUsageError(f"unknown chapter(s) {unknown}; chapters: {[Path(n).name for n in names]}")
    wanted = [n for n in names if not chapters or Path(n).name in set(chapters)]
    common = {"profile": profile, "run_root": run_root, "seeds": [0], **(parameters or {})}
    _check_parameters(root, names, parameters or {})
    if not is_reference_root(REFERENCE_ROOT):  # chapters 03 and 06 compare with it even with --fresh
        raise BookError(f"no reference runs in {REFERENCE_ROOT} ({REFERENCE_INDEX} is missing); restore "
                        "the folder from the repository, or write it with `python -m ddd_support export-reference`")

    env_url, env_branch = repository_from_env()
    stage_source(root, source, repository_url or env_url, branch or env_branch)
    analysed = f"runs of {profile} in {run_root}" if fresh else f"the reference in {REFERENCE_ROOT.name}/"
    print(f"book: training profile {profile}, runs in {run_root}; analysis chapters read {analysed}; "
          f"executed notebooks in {source}", flush=True)
    t_start = time.perf_counter()
    for i, name in enumerate(wanted if execute else [], 1):
        md = root / f"{name}.md"
        target = source / f"{name}.ipynb"
        if not is_notebook(md):
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(md, source / f"{name}.md")
            print(f"[{i}/{len(wanted)}] {name}: text page, copied", flush=True)
            continue
        import jupytext

        given = chapter_parameters(declared_parameters(jupytext.read(md)), common, fresh)
        shown = ", ".join(f"{k}={v!r}" for k, v in given.items())
        print(f"[{i}/{len(wanted)}] {name}: executing ({shown})", flush=True)
        seconds = execute_chapter(md, target, given, out, timeout)
        print(f"[{i}/{len(wanted)}] {name}: done in {seconds:.1f} s", flush=True)
    missing = [n for n in names if not (source / f"{n}.ipynb").exists() and is_notebook(root / f"{n}.md")]
    if missing and html:
        raise BookError(f"no executed notebook for {missing} in {source}; run without --html-only first")
    if execute:
        print(f"book: all chapters executed in {time.perf_counter() - t_start:.1f} s", flush=True)
    if not html:
        return source
    print("book: building HTML with jupyter-book (execution off, warnings are errors)", flush=True)
    t0 = time.perf_counter()
    build_html(source, out)
    html_dir = out / "_build" / "html"
    print(f"book: HTML built in {time.perf_counter() - t0:.1f} s: {html_dir / 'index.html'}", flush=True)
    return html_dir


def chapter_parameters(declared: set[str], common: dict[str, Any], fresh: bool) -> dict[str, Any]:
    """The parameters one chapter receives: those of ``common`` it declares, except that an
    analysis chapter keeps its own run selection (the reference) unless ``fresh``."""
    keep_own = not fresh and ANALYSIS_MARKER in declared
    return {k: v for k, v in common.items() if k in declared and not (keep_own and k in RUN_SELECTION)}


def _check_parameters(root: Path, names: list[str], parameters: dict[str, Any]) -> None:
    """Every ``-p`` key must be declared by at least one chapter (catches typos)."""
    if not parameters:
        return
    import jupytext

    declared: set[str] = set()
    for name in names:
        md = root / f"{name}.md"
        if is_notebook(md):
            declared |= declared_parameters(jupytext.read(md))
    unknown = sorted(set(parameters) - declared)
    if unknown:
        raise BookUsageError(f"parameter(s) {unknown} appear in no chapter's parameters cell; "
                        f"known parameters: {', '.join(sorted(declared))}")


def chapter_files(root: Path = PROJECT_ROOT) -> list[Path]:
    """The chapters that are notebooks (``book/<name>.md`` with a jupytext header), in order."""
    return [root / f"{name}.md" for name in chapter_names(root) if is_notebook(root / f"{name}.md")]


def pair_notebooks(root: Path = PROJECT_ROOT) -> list[Path]:
    """Write ``book/<name>.ipynb`` next to each chapter, for opening in Jupyter (not tracked by git)."""
    import jupytext

    written = []
    for md in chapter_files(root):
        jupytext.write(jupytext.read(md), md.with_suffix(".ipynb"))
        written.append(md.with_suffix(".ipynb"))
    return written


EXAMPLES = """examples:
  python -m ddd_support.book                  what `make book` runs: 01-02 on smoke, 03-06 read the reference
  python -m ddd_support.book --fresh          03-06 analyse the runs chapter 02 trains
  python -m ddd_support.book --profile cpu --fresh -y "seeds: [0, 1]" -y "overrides: {epochs: 30}"
  python -m ddd_support.book --chapter 01_noise --no-html -p n_show 8

Parameters are read as papermill reads them; a key must appear in some chapter's parameters
cell (`papermill --help-notebook` lists them, with their types)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ddd_support.book", epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Execute the book's chapters in order with papermill, then build the HTML.")
    parser.add_argument("--profile", default="smoke", help=f"one of {', '.join(PROFILES)} (default smoke)")
    parser.add_argument("-p", "--parameters", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                        help="set a chapter parameter as papermill's -p does: True, False, None and numbers "
                             "become Python values, anything else a string (e.g. -p n_show 8); repeat for several")
    parser.add_argument("-r", "--parameters_raw", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                        help="set a chapter parameter to the string VALUE, unconverted")
    parser.add_argument("-y", "--parameters_yaml", action="append", default=[], metavar="YAML",
                        help="parameters as a YAML mapping, for lists and dicts: -y \"seeds: [0, 1]\"")
    parser.add_argument("-f", "--parameters_file", action="append", default=[], metavar="FILE",
                        help="parameters from a YAML file (applied first; then -y, -p, -r)")
    parser.add_argument("--out", default=str(PROJECT_ROOT),
                        help="folder that receives _build/executed and _build/html (default: the project root)")
    parser.add_argument("--runs", default=None,
                        help="root folder of run directories (default: OUT/runs)")
    parser.add_argument("--fresh", action="store_true",
                        help="the analysis chapters analyse the runs of --profile trained by the book, "
                             "instead of the committed reference runs")
    parser.add_argument("--chapter", action="append", metavar="NAME",
                        help="execute only this chapter (e.g. 03_loss_decomposition); repeat for several")
    parser.add_argument("--no-html", action="store_true", help="execute the chapters, skip the HTML build")
    parser.add_argument("--html-only", action="store_true",
                        help="skip execution; rebuild the HTML from the notebooks already in OUT/_build/executed")
    parser.add_argument("--timeout", type=int, default=None, help="seconds allowed per cell (default: none)")
    parser.add_argument("--repository-url", default=None, metavar="URL",
                        help=f"the repository the book's buttons link to (default: ${REPOSITORY_URL_ENV}; "
                             "none: no repository or launch buttons)")
    parser.add_argument("--pair", action="store_true",
                        help="only write book/<chapter>.ipynb copies for interactive use, then stop")
    parser.add_argument("--normalise", action="store_true",
                        help="only rewrite the chapters in the form JupyterLab saves them (jupytext), then stop")
    parser.add_argument("--check", action="store_true",
                        help="with --normalise: change nothing, list the chapters not in that form, exit 1 if any")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.check and not args.normalise:
        parser.error("--check goes with --normalise")
    try:
        require_checkout()
    except BookError as exc:
        print(f"book: {exc}", file=sys.stderr, flush=True)
        return EXIT_FAILURE
    if args.normalise:
        changed = normalise(chapter_files(), check=args.check)
        verb = "not in JupyterLab's form (run --normalise)" if args.check else "normalised"
        for path in changed:
            print(f"{path.relative_to(PROJECT_ROOT)}: {verb}", flush=True)
        return EXIT_FAILURE if args.check and changed else 0
    if args.pair:
        for path in pair_notebooks():
            print(path.relative_to(PROJECT_ROOT))
        return 0
    t0 = time.perf_counter()
    try:
        params = collect_parameters(args.parameters_file, args.parameters_yaml, args.parameters,
                                    args.parameters_raw)
        run_book(args.profile, params, args.out, args.runs, args.chapter, not args.no_html, args.timeout,
                 execute=not args.html_only, fresh=args.fresh, repository_url=args.repository_url)
    except BookUsageError as exc:
        print(f"book: {exc}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    except BookError as exc:
        print(f"book: FAILED: {exc}", file=sys.stderr, flush=True)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("book: interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    print(f"book: finished in {time.perf_counter() - t0:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
