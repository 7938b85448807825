"""Run the book: execute every chapter in order with papermill, then build the HTML.

    python -m ddd_support.book                      # 01-02 train smoke; 03-06 read the reference
    python -m ddd_support.book --fresh              # 03-06 analyse the runs 02 just trained
    python -m ddd_support.book --profile cpu --fresh -p seeds '[0, 1, 2]'

Steps, each printed on the console as it happens:

1. read the chapter order from ``_toc.yml``;
2. convert each MyST-markdown chapter ``book/<name>.md`` to a notebook (jupytext);
3. execute it with papermill (kernel ``python3``, working directory ``--out``), passing
   ``profile``, ``run_root`` and every ``-p KEY VALUE`` the chapter declares in its
   ``parameters`` cell. The analysis chapters (those that declare ``run_dirs``) keep their
   own run selection (the committed reference in ``reference/``) unless ``--fresh`` is given;
   with ``--fresh`` they analyse the runs of ``--profile`` under ``--runs`` (seed 0 unless
   ``-p seeds`` says otherwise). The executed notebook is written to
   ``<out>/_build/executed/book/<name>.ipynb``, even when a cell fails;
4. copy ``_config.yml``, ``_toc.yml`` and the non-notebook files of ``book/`` next to the
   executed notebooks, so ``<out>/_build/executed`` is a complete book source;
5. ``jupyter-book build`` that source with execution off and warnings as errors
   (``-W --keep-going``); the HTML lands in ``<out>/_build/html``.

Any failing cell, or any Sphinx warning, ends the run with a non-zero exit status.
This module only orchestrates: what a chapter computes lives in the chapter and the package.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterable

import yaml

from .config import PROFILES
from .reference import REFERENCE_INDEX, REFERENCE_ROOT, is_reference_root

#: The project root: where ``_config.yml``, ``_toc.yml`` and ``book/`` live.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: Parameters that choose which runs a chapter trains or reads: the analysis chapters get them
#: only with ``fresh`` (otherwise they read the reference their parameters cell names).
RUN_SELECTION = ("profile", "run_root", "seeds", "models", "overrides")
#: A chapter that declares this parameter analyses runs (rather than training them).
ANALYSIS_MARKER = "run_dirs"


class BookError(RuntimeError):
    """The book could not be executed or built; the message says which chapter or step."""


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
    """A ``-p`` value read as YAML: ``30`` -> 30, ``[mlp7]`` -> list, ``{epochs: 30}`` -> dict."""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def declared_parameters(notebook: Any) -> set[str]:
    """Names assigned in the chapter's ``parameters`` cell."""
    import papermill

    return set(papermill.inspect_notebook(notebook))


def stage_source(root: Path, source: Path) -> None:
    """Copy the book configuration and everything in ``book/`` but the notebooks into ``source``."""
    (source / "book").mkdir(parents=True, exist_ok=True)
    for name in ("_config.yml", "_toc.yml"):
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
    return time.perf_counter() - t0


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
             root: Path = PROJECT_ROOT, execute: bool = True, fresh: bool = False) -> Path:
    """Execute the chapters in order and build the HTML; returns the HTML folder.

    Without ``fresh`` the analysis chapters read the committed reference runs; with it they
    analyse the runs of ``profile`` that the training chapter writes under ``runs``.
    """
    if profile not in PROFILES:
        raise BookError(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    out = Path(out).resolve()
    runs = Path(runs).resolve() if runs else out / "runs"
    run_root = os.path.relpath(runs, out) if runs.is_relative_to(out) else str(runs)
    source = out / "_build" / "executed"
    names = chapter_names(root)
    if chapters:
        unknown = sorted(set(chapters) - {Path(n).name for n in names})
        if unknown:
            raise BookError(f"unknown chapter(s) {unknown}; chapters: {[Path(n).name for n in names]}")
    wanted = [n for n in names if not chapters or Path(n).name in set(chapters)]
    common = {"profile": profile, "run_root": run_root, "seeds": [0], **(parameters or {})}
    _check_parameters(root, names, parameters or {})
    if not is_reference_root(REFERENCE_ROOT):  # chapters 03 and 06 compare with it even with --fresh
        raise BookError(f"no reference runs in {REFERENCE_ROOT} ({REFERENCE_INDEX} is missing); restore "
                        "the folder from the repository, or write it with `python -m ddd_support export-reference`")

    stage_source(root, source)
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
        raise BookError(f"parameter(s) {unknown} appear in no chapter's parameters cell; "
                        f"known parameters: {', '.join(sorted(declared))}")


def pair_notebooks(root: Path = PROJECT_ROOT) -> list[Path]:
    """Write ``book/<name>.ipynb`` next to each chapter, for opening in Jupyter (not tracked by git)."""
    import jupytext

    written = []
    for name in chapter_names(root):
        md = root / f"{name}.md"
        if is_notebook(md):
            jupytext.write(jupytext.read(md), md.with_suffix(".ipynb"))
            written.append(md.with_suffix(".ipynb"))
    return written


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ddd_support.book",
        description="Execute the book's chapters in order with papermill, then build the HTML.")
    parser.add_argument("--profile", default="smoke", help=f"one of {', '.join(PROFILES)} (default smoke)")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                        help="set a chapter parameter (value read as YAML), e.g. -p seed 1 "
                             "-p overrides '{epochs: 30}'; repeat for several")
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
    parser.add_argument("--pair", action="store_true",
                        help="only write book/<chapter>.ipynb copies for interactive use, then stop")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.pair:
        for path in pair_notebooks():
            print(path.relative_to(PROJECT_ROOT))
        return 0
    params = {key: parse_value(value) for key, value in args.parameter}
    t0 = time.perf_counter()
    try:
        run_book(args.profile, params, args.out, args.runs, args.chapter, not args.no_html, args.timeout,
                 execute=not args.html_only, fresh=args.fresh)
    except BookError as exc:
        print(f"book: FAILED: {exc}", file=sys.stderr, flush=True)
        return 1
    print(f"book: finished in {time.perf_counter() - t0:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
