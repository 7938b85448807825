"""The chapters in the form JupyterLab saves them, so that saving a chapter changes nothing.

JupyterLab opens a chapter ``book/<name>.md`` through jupytext, runs it with the ``python3``
kernel (whose kernelspec ipykernel names "Python 3 (ipykernel)") and writes it back with
jupytext's writer and ``book/jupytext.toml``. ``normal_form`` does exactly that without
JupyterLab; ``python -m ddd_support.book --normalise`` rewrites every chapter into that form, and
``--normalise --check`` only lists the chapters that are not in it (the pre-commit hook).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ddd_support.files import atomic_write_text

#: The kernelspec JupyterLab writes into a notebook it ran with ipykernel's ``python3`` kernel.
LAB_KERNELSPEC: dict[str, str] = {"display_name": "Python 3 (ipykernel)", "language": "python",
                                  "name": "python3"}
#: The text format of every chapter.
CHAPTER_FORMAT = "md:myst"


def jupytext_config(path: Path) -> Any:
    """The jupytext configuration that applies to ``path`` (searched from its folder upwards)."""
    from jupytext.config import find_jupytext_configuration_file, load_jupytext_configuration_file

    found = find_jupytext_configuration_file(str(path.parent))
    return load_jupytext_configuration_file(found) if found else None


def normal_form(path: Path) -> str:
    """The text of chapter ``path`` as JupyterLab would save it after running it."""
    import jupytext

    notebook = jupytext.reads(path.read_text(), fmt=CHAPTER_FORMAT)
    notebook.metadata["kernelspec"] = dict(LAB_KERNELSPEC)
    return jupytext.writes(notebook, fmt=CHAPTER_FORMAT, config=jupytext_config(path))


def normalise(paths: list[Path], check: bool = False) -> list[Path]:
    """The chapters of ``paths`` not in their normal form; rewritten (atomically) unless ``check``."""
    changed = []
    for path in paths:
        text = normal_form(path)
        if text != path.read_text():
            changed.append(path)
            if not check:
                atomic_write_text(path, text)
    return changed
