"""The run-directory schema as a table for the book, read from where it is written down once: the
docstring of ``ddd_support.runs.schema`` (an entry is a line that starts with ````name````, its
description the indented lines below it)."""

from __future__ import annotations

import re

import pandas as pd

from ddd_support.runs import schema

#: The longest description shown; the rest is in the docstring.
MAX_CHARS = 160
ENTRY = re.compile(r"^``(?P<name>[^`]+)``(?P<rest>.*)$")


def schema_entries(doc: str | None = None) -> pd.DataFrame:
    """One row per file of a run directory: ``file`` and the first sentence of what it ``holds``."""
    rows: list[dict[str, str]] = []
    for line in (doc if doc is not None else schema.__doc__ or "").splitlines():
        found = ENTRY.match(line)
        if found:
            name = found["name"] + re.sub(r"``", "", found["rest"]).rstrip()
            rows.append({"file": name, "holds": ""})
        elif rows and line.startswith("    ") and line.strip():
            rows[-1]["holds"] += " " + line.strip()
    for row in rows:
        text = re.sub(r"``", "", row["holds"]).strip()
        sentence = re.split(r"(?<=\.)\s", text, maxsplit=1)[0].rstrip(".")
        row["holds"] = sentence if len(sentence) <= MAX_CHARS else sentence[:MAX_CHARS].rsplit(" ", 1)[0] + " …"
    return pd.DataFrame(rows, columns=["file", "holds"])
