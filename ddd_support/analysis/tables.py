"""Summary tables over many runs (one row per run, or per run and layer): the seed spread.

These are the tables the analysis chapters show across seeds and that
``python -m ddd_support export-reference`` writes next to a reference run as CSV. Each run
is summarised once (``summary.summarise_run``); every table is a view of those summaries.
``tables_for`` reads a reference's written tables when they hold exactly the runs asked for,
so every chapter reads the same summary instead of summarising the same runs again.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from ddd_support.analysis.ablation import stored_ablation
from ddd_support.analysis.claims import claims_from, claims_over_seeds
from ddd_support.analysis.phases import PHASE_FIELDS
from ddd_support.analysis.summary import RunSummary, summarise_run
from ddd_support.files import atomic_write_text

if TYPE_CHECKING:
    from ddd_support.runs.reader import RunData


def summarise_runs(runs: list["RunData"], threshold: float = 100.0,
                   ablations: dict[tuple[str, int], pd.DataFrame] | None = None) -> list[RunSummary]:
    """``summarise_run`` of each run; its ablation from ``ablations[(model, seed)]`` or the table stored with it."""
    ablations = ablations or {}
    return [summarise_run(r, threshold, ablations.get((r.model, r.seed), stored_ablation(r))) for r in runs]


def _frame(summaries: list[RunSummary], rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([{**s.key, **r} for s, r in zip(summaries, rows)])


def phase_rows(summaries: list[RunSummary]) -> pd.DataFrame:
    """Per run: every ``Phases`` field."""
    return _frame(summaries, [s.phases for s in summaries])[["model", "seed", *PHASE_FIELDS]]


def post_fit_rows(summaries: list[RunSummary]) -> pd.DataFrame:
    """Per run: the paired post-fit change of test accuracy (``regeneralisation.post_fit_change``)."""
    return _frame(summaries, [s.post_fit for s in summaries])


def post_fit_grid_rows(summaries: list[RunSummary]) -> pd.DataFrame:
    """Per run and variant of the sensitivity grid: the post-fit change (``regeneralisation.sensitivity_grid``)."""
    table = pd.concat([s.post_fit_grid.assign(**s.key) for s in summaries], ignore_index=True)
    table["fit_epoch"] = pd.to_numeric(table["fit_epoch"], errors="coerce").astype(float)
    return table[["model", "seed", "level", "window", "end_fraction", "fit_epoch", "change", "low", "high", "outcome"]]


def separation_rows(summaries: list[RunSummary]) -> pd.DataFrame:
    """Per run and layer: class-averaged clean/noisy cosine at the first and last snapshot, and its change."""
    return pd.concat([s.separation.assign(**s.key) for s in summaries], ignore_index=True)[
        ["model", "seed", "layer", "first_epoch", "first", "last_epoch", "last", "change"]]


def index_rows(summaries: list[RunSummary]) -> pd.DataFrame:
    """Per run, snapshot and layer: the separation index with its class interval and its baselines."""
    table = pd.concat([s.index.assign(**s.key) for s in summaries], ignore_index=True)
    return table[["model", "seed", *[c for c in table.columns if c not in ("model", "seed")]]]


def depth_rows(summaries: list[RunSummary]) -> pd.DataFrame:
    """Per run with a split-half baseline: the outer layer's index and the depth trend (``depth_trend``)."""
    return pd.DataFrame([{**s.key, **s.depth} for s in summaries if s.depth is not None])


def large_activation_rows(summaries: list[RunSummary]) -> pd.DataFrame:
    """Per run: the candidate layer's large activation and the correlations of its neuron."""
    rows = []
    for s in summaries:
        a = s.correlations.attrs
        rows.append({**s.key, **s.large, "input_r": a["input_r"], "output_r": a["output_r"],
                     "input_percentile": a["input_percentile"]})
    return pd.DataFrame(rows)


def per_image_rows(summaries: list[RunSummary]) -> pd.DataFrame:
    """Per run, snapshot and layer: the per-image ratio and dominance (``large_activation.per_image_table``)."""
    frames = [s.per_image.assign(**s.key) for s in summaries if not s.per_image.empty]
    if not frames:
        return pd.DataFrame()
    table = pd.concat(frames, ignore_index=True)
    return table[["model", "seed", *[c for c in table.columns if c not in ("model", "seed")]]]


def correlation_rows(summaries: list[RunSummary]) -> pd.DataFrame:
    """Per run: the correlations of the candidate neuron (as ``correlation_table``)."""
    frames = [s.correlations.assign(**s.key, layer=s.correlations.attrs["layer"],
                                    neuron=s.correlations.attrs["neuron"], epoch=s.correlations.attrs["epoch"])
              for s in summaries]
    table = pd.concat(frames, ignore_index=True)
    first = ["model", "seed", "layer", "neuron", "epoch"]
    return table[first + [c for c in table.columns if c not in first]]


def ablation_rows(summaries: list[RunSummary]) -> pd.DataFrame:
    """Per run with an ablation: the paired effect of silencing the neuron and its rank among random ones."""
    return pd.DataFrame([{**s.key, **s.ablation} for s in summaries if s.ablation is not None])


def claim_rows(summaries: list[RunSummary], threshold: float = 100.0) -> pd.DataFrame:
    """Per run and claim: statistic, interval, outcome and verdict (``claims.claims_from``)."""
    return pd.concat([claims_from(s, threshold) for s in summaries], ignore_index=True)


def summary_tables(runs: list["RunData"], threshold: float = 100.0,
                   summaries: list[RunSummary] | None = None) -> dict[str, pd.DataFrame]:
    """Every summary table of ``runs`` by name (the files ``write_summary_tables`` writes)."""
    summaries = summarise_runs(runs, threshold) if summaries is None else summaries
    claims = claim_rows(summaries, threshold)
    grid = post_fit_grid_rows(summaries)
    return {"phases": phase_rows(summaries), "post_fit": post_fit_rows(summaries), "post_fit_grid": grid,
            "separation": separation_rows(summaries), "separation_index": index_rows(summaries),
            "separation_depth": depth_rows(summaries), "large_activation": large_activation_rows(summaries),
            "per_image": per_image_rows(summaries),
            "correlations": correlation_rows(summaries), "ablation": ablation_rows(summaries),
            "claims": claims, "claims_over_seeds": claims_over_seeds(claims, grid)}


#: The tables ``summary_tables`` gives, by name.
TABLE_NAMES: tuple[str, ...] = ("phases", "post_fit", "post_fit_grid", "separation", "separation_index",
                                "separation_depth", "large_activation", "per_image", "correlations", "ablation",
                                "claims", "claims_over_seeds")


def write_summary_tables(runs: list["RunData"], dest: str | os.PathLike,
                         threshold: float = 100.0) -> list[Path]:
    """Write ``summary_tables(runs)`` as ``dest/<name>.csv`` (atomically); returns the paths."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for old in dest.glob("*.csv"):
        old.unlink()
    for name, table in summary_tables(runs, threshold).items():
        path = dest / f"{name}.csv"
        atomic_write_text(path, table.to_csv(index=False, float_format="%.6g"))
        paths.append(path)
    return paths


def read_summary_tables(src: str | os.PathLike) -> dict[str, pd.DataFrame]:
    """The tables ``write_summary_tables`` wrote into ``src``, by name (an empty file gives an empty table)."""
    return {path.stem: pd.read_csv(path) if path.stat().st_size > 1 else pd.DataFrame()
            for path in sorted(Path(src).glob("*.csv"))}


def tables_for(runs: list["RunData"], stored: str | os.PathLike | None = None, threshold: float = 100.0,
               ablations: dict[tuple[str, int], pd.DataFrame] | None = None) -> dict[str, pd.DataFrame]:
    """``summary_tables(runs)``, read from ``stored`` (a folder of ``write_summary_tables``) when it holds
    every table for exactly these runs' (model, seed) pairs, else computed once here (with
    ``ablations`` as in ``summarise_runs``)."""
    if stored is not None and Path(stored).is_dir():
        tables = read_summary_tables(stored)
        phases = tables.get("phases")
        wanted = {(r.model, r.seed) for r in runs}
        if (phases is not None and set(TABLE_NAMES) <= set(tables)
                and set(zip(phases["model"], phases["seed"].astype(int))) == wanted and len(phases) == len(runs)):
            return tables
    return summary_tables(runs, threshold, summarise_runs(runs, threshold, ablations))
