"""The book's results first: what the committed reference runs support, in plain words.

Read from the reference's claims tables (``reference/<profile>/tables/claims_over_seeds.csv``,
written by ``export-reference``), so the intro's summary changes with the tables, verdict words
included: every verdict the tables use is listed, in ``OUTCOME_ORDER`` first.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ddd_support.analysis.claims import THRESHOLD_CLAIMS, interval_text
from ddd_support.analysis.stats import VERDICTS
from ddd_support.book.reference import REFERENCE_ROOT

#: The order in which the summary lists the verdicts (any other verdict word comes after these).
OUTCOME_ORDER = VERDICTS


def claims_table(profile: str, root: Path = REFERENCE_ROOT, per_seed: bool = False) -> pd.DataFrame:
    """The reference's claims of ``profile``: over seeds (default) or one row per seed."""
    name = "claims.csv" if per_seed else "claims_over_seeds.csv"
    return pd.read_csv(Path(root) / profile / "tables" / name)


def largest_model(table: pd.DataFrame) -> str:
    """The deepest model of a claims table (``mlp7`` of mlp3, mlp5, mlp7)."""
    return max(table["model"].unique(), key=lambda m: int("".join(filter(str.isdigit, m)) or 0))


def outcomes(table: pd.DataFrame, model: str) -> dict[str, list[str]]:
    """The statements of ``model``'s claims grouped by verdict, verdicts in ``OUTCOME_ORDER``; a
    threshold claim judged on a value without an interval says so."""
    rows = table[table["model"] == model].assign(verdict=lambda t: t["verdict"].fillna("not testable"))
    low = rows["low"].astype(float) if "low" in rows else pd.Series(0.0, index=rows.index)
    alone = rows["claim"].isin(THRESHOLD_CLAIMS) & rows["verdict"].isin(["holds", "ruled out"]) & ~np.isfinite(low)
    statements = rows["statement"].where(~alone, rows["statement"] + " — one run's value, no interval")
    found = list(dict.fromkeys(rows["verdict"]))
    order = [v for v in OUTCOME_ORDER if v in found] + [v for v in found if v not in OUTCOME_ORDER]
    return {v: list(statements[rows["verdict"] == v]) for v in order}


def outcome_sentence(table: pd.DataFrame, model: str) -> str:
    """A Markdown list, one item per verdict: ``- **holds**: a; b.``; every claim of ``model`` once."""
    return "\n".join(f"- **{verdict}**: {'; '.join(statements)}." for verdict, statements in
                     outcomes(table, model).items())


def post_fit_text(table: pd.DataFrame, model: str) -> str:
    """The change of test accuracy after the noisy labels are fitted, in points with its interval."""
    row = table[(table["model"] == model) & (table["claim"] == "post_fit_rise")].iloc[0]
    value = row["mean"] if "mean" in row else row["statistic"]
    if not np.isfinite(value):
        return "not measured (the noisy labels were never fitted)"
    return f"{interval_text(value, row['low'], row['high'])} points"


def results_first(root: Path = REFERENCE_ROOT) -> dict[str, str]:
    """The numbers and sentences of the intro's summary, by glue name, for the ``cpu`` reference
    (its seeds, over seeds) and the one-seed ``paper`` run."""
    cpu, paper = claims_table("cpu", root), claims_table("paper", root, per_seed=True)
    big = largest_model(cpu)
    large = pd.read_csv(Path(root) / "paper" / "tables" / "large_activation.csv")
    neuron = large[large["model"] == big].iloc[0]
    return {
        "model": big.upper(),
        "cpu_seeds": str(int(cpu["seeds"].max())),
        "cpu_outcomes": outcome_sentence(cpu, big),
        "cpu_post_fit": post_fit_text(cpu, big),
        "paper_seeds": str(paper["seed"].nunique()),
        "paper_outcomes": outcome_sentence(paper, big),
        "paper_post_fit": post_fit_text(paper, big),
        "paper_layer": f"{int(neuron['probe_layer'])} of {int(neuron['layers'])}",
        "paper_ratio": f"{neuron['probe_ratio']:.0f}",
        "paper_ratio_init": f"{neuron['probe_ratio_at_init']:.0f}",
    }
