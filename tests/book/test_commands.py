"""Every command the README and the book's pages show runs as written: the cheap ones are run,
the others are parsed by the parser of the program they call (make targets, CLI options,
chapter parameters), so a renamed option or parameter fails here first."""

import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path

import jupytext
import papermill
import pytest

from ddd_support.book import run as book_runner
from ddd_support.cli import build_parser
from ddd_support.sweeps.spec import expand, load_spec

ROOT = Path(__file__).resolve().parents[2]
#: Commands cheap enough to run for real (seconds, no data, no training).
RUN = {("ddd_support", "profiles"), ("ddd_support", "--version"), ("ddd_support.book", "--help")}


def _bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, re.S)


def _commands(block: str) -> list[str]:
    joined = re.sub(r"\\\n\s*", " ", block)
    lines = [line.split(" #", 1)[0].strip() for line in joined.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def shown_commands() -> list[tuple[str, str]]:
    """(where, command) for every command in the README's bash blocks and the book's pages."""
    found = []
    readme = (ROOT / "README.md").read_text()
    for block in _bash_blocks(readme):
        found += [("README.md", c) for c in _commands(block)]
    for page in sorted((ROOT / "book").glob("*.md")):
        text = page.read_text()
        for block in _bash_blocks(text):
            found += [(page.name, c) for c in _commands(block)]
        inline = re.findall(r"`((?:\.venv/bin/)?(?:papermill|jupytext|python -m ddd_support|make) [^`]+)`", text)
        found += [(page.name, c) for c in inline]
    return found


COMMANDS = shown_commands()


def test_the_readme_and_the_book_show_commands():
    where = {w for w, _ in COMMANDS}
    assert "README.md" in where and len(COMMANDS) > 20


def make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), re.M))


def chapter_of(path: str) -> Path:
    md = ROOT / Path(path).with_suffix(".md")
    assert md.is_file(), path
    return md


def check_papermill(args: list[str]) -> None:
    notebook, rest = args[0], args[2:]
    declared = papermill.inspect_notebook(jupytext.read(chapter_of(notebook)))
    keys = []
    it = iter(rest)
    for arg in it:
        if arg in ("-p", "-r"):
            keys.append(next(it))
            next(it)
        elif arg == "-y":
            keys += list(book_runner.collect_parameters(yamls=[next(it)]))
        elif arg == "--cwd":
            assert (ROOT / next(it)).is_dir()
        elif arg == "--help-notebook":
            continue
        else:
            raise AssertionError(f"unexpected papermill argument {arg!r}")
    unknown = [k for k in keys if k not in declared]
    assert not unknown, f"{notebook} declares no parameter {unknown}; it has {sorted(declared)}"


@pytest.mark.parametrize("where,command", COMMANDS, ids=[f"{w}: {c[:60]}" for w, c in COMMANDS])
def test_shown_command_runs_as_written(where, command):
    words = shlex.split(command)
    program, args = words[0].removeprefix(".venv/bin/"), words[1:]
    if program == "make":
        assert args[0] in make_targets(), f"no make target {args[0]!r}"
        assert all(re.fullmatch(r"[A-Z]+=\S*", a) for a in args[1:]), args
    elif program == "python" and args[:2] == ["-m", "ddd_support"]:
        if args[2] == "sweep":
            parsed = build_parser().parse_args(args[2:])
            if parsed.spec:
                assert expand(load_spec(ROOT / parsed.spec)), parsed.spec
        if tuple(args[2:4]) in RUN or (len(args) == 3 and ("ddd_support", args[2]) in RUN) or "--dry-run" in args:
            result = subprocess.run([sys.executable, "-m", "ddd_support", *args[2:]], cwd=ROOT,
                                    capture_output=True, text=True, timeout=120)
            assert result.returncode == 0, result.stderr
        else:
            build_parser().parse_args(args[2:])
    elif program == "python" and args[:2] == ["-m", "ddd_support.book"]:
        if args[2:] == ["--help"]:
            result = subprocess.run([sys.executable, "-m", "ddd_support.book", "--help"], cwd=ROOT,
                                    capture_output=True, text=True, timeout=120)
            assert result.returncode == 0, result.stderr
        else:
            parsed = book_runner.build_parser().parse_args(args[2:])
            params = book_runner.collect_parameters(yamls=parsed.parameters_yaml or [])
            declared = set().union(*(book_runner.declared_parameters(jupytext.read(ROOT / f"{n}.md"))
                                     for n in book_runner.chapter_names() if (ROOT / f"{n}.md").is_file()))
            assert set(params) <= declared, sorted(set(params) - declared)
    elif program == "python" and args[0].startswith("experiments/") and args[0].endswith(".py"):
        script = ROOT / args[0]
        assert script.is_file(), args[0]
        spec = importlib.util.spec_from_file_location(script.stem, script)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        parsed = module.build_parser().parse_args(args[1:])
        assert expand(load_spec(ROOT / parsed.spec))
    elif program == "jupytext":
        assert args[:2] == ["--to", "ipynb"] and (ROOT / args[2]).is_file(), args
    elif program == "papermill":
        if args[0] == "--help-notebook":
            check_papermill([args[1], "-", "--help-notebook"])
        else:
            check_papermill(args)
    else:
        pytest.fail(f"{where}: no check for the program of {command!r}")
