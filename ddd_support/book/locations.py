"""Where the committed reference lives and how to recognise one: names only, no imports of the
analysis, so that the book runner answers ``--help`` and usage errors without loading it."""

from __future__ import annotations

import os
from pathlib import Path

#: The folder of a reference root that holds exported sweeps.
SWEEPS_DIR = "sweeps"
#: The committed reference runs (``reference/`` beside the package).
REFERENCE_ROOT = Path(__file__).resolve().parents[2] / "reference"
#: A reference root's index of runs and tables.
REFERENCE_INDEX = "reference.json"


def is_reference_root(path: str | os.PathLike) -> bool:
    """True if ``path`` is a reference root (it holds ``reference.json``)."""
    return (Path(path) / REFERENCE_INDEX).is_file()
