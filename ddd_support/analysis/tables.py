"""Summary tables over many runs (one row per run, or per run and layer): the seed spread.

These are the tables the analysis chapters show across seeds and that
``python -m ddd_support export-reference`` writes next to a reference run as CSV.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from ..recording import atomic_write_text
from .claims import claims_from, strongest_correlation
from .large_activation import (correlation_table, dominant_neuron, emergence_epoch,
                               large_activation_table, largest_layer)
from .phases import phase_table
from .separation import layer_separation, separation_summary, separation_table

if TYPE_CHECKING:
    from .rundata import RunData


def separation_rows(runs: list["RunData"], by: str = "true") -> pd.DataFrame:
    """Per run and layer: class-averaged clean/noisy cosine at the first and last snapshot, and its change."""
    frames = [separation_summary(layer_separation(separation_table(r, by=by))).assign(model=r.model, seed=r.seed)
              for r in runs]
    table = pd.concat(frames, ignore_index=True)
    return table[["model", "seed", *[c for c in table.columns if c not in ("model", "seed")]]]


def large_activation_rows(runs: list["RunData"], threshold: float = 100.0) -> pd.DataFrame:
    """Per run: the layer whose top neuron stands out most at the last snapshot, and that neuron's story."""
    rows = []
    for run in runs:
        table = large_activation_table(run, threshold=threshold)
        layer = largest_layer(table)
        last = table[(table["epoch"] == table["epoch"].max()) & (table["layer"] == layer)].iloc[0]
        emerged = emergence_epoch(table, layer, threshold)
        dom = dominant_neuron(table, layer, min_epoch=emerged or 0)
        corr = correlation_table(run, layer=layer)
        rows.append({"model": run.model, "seed": run.seed, "layers": run.n_layers, "largest_layer": layer,
                     "neuron": int(last["neuron"]), "value": float(last["value"]),
                     "ratio": float(last["ratio"]), "peak_ratio": float(table["ratio"].max()),
                     "emergence_epoch": emerged, "same_neuron_fraction": dom.fraction,
                     "input_r": strongest_correlation(corr, "input"),
                     "output_r": strongest_correlation(corr, "output")})
    return pd.DataFrame(rows)


def correlation_rows(runs: list["RunData"]) -> pd.DataFrame:
    """Per run: the correlations of the largest layer's top neuron (as ``correlation_table``)."""
    frames = []
    for run in runs:
        corr = correlation_table(run)
        frames.append(corr.assign(model=run.model, seed=run.seed, layer=corr.attrs["layer"],
                                  neuron=corr.attrs["neuron"], epoch=corr.attrs["epoch"]))
    table = pd.concat(frames, ignore_index=True)
    first = ["model", "seed", "layer", "neuron", "epoch"]
    return table[first + [c for c in table.columns if c not in first]]


def claim_rows(runs: list["RunData"], threshold: float = 100.0, phases: pd.DataFrame | None = None,
               separation: pd.DataFrame | None = None, large: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per run and claim of the paper: whether it holds (``claims_from``), from the summary tables
    of ``runs`` (computed here unless given, with ``separation_rows``' default grouping)."""
    phases = phase_table(runs) if phases is None else phases
    separation = separation_rows(runs) if separation is None else separation
    large = large_activation_rows(runs, threshold) if large is None else large
    rows = []
    for run in runs:
        def of(table: pd.DataFrame) -> pd.DataFrame:
            return table[(table["model"] == run.model) & (table["seed"] == run.seed)]

        verdicts = claims_from(run.metrics, of(phases).iloc[0], of(separation), of(large).iloc[0], threshold)
        rows += [{"model": run.model, "seed": run.seed, "claim": c, "holds": h} for c, h in verdicts.items()]
    return pd.DataFrame(rows)


def claim_counts(claims: pd.DataFrame) -> pd.DataFrame:
    """Claims x models: "k/n", the number of seeds in which the claim holds (claims in their order)."""
    counts = claims.groupby(["claim", "model"], sort=False)["holds"].agg(
        lambda s: f"{int(s.sum())}/{len(s)}")
    return counts.unstack("model").reindex(claims["claim"].unique())


def summary_tables(runs: list["RunData"], threshold: float = 100.0) -> dict[str, pd.DataFrame]:
    """Every summary table of ``runs`` by name: phases, separation, large_activation, correlations, claims."""
    tables = {"phases": phase_table(runs), "separation": separation_rows(runs),
              "large_activation": large_activation_rows(runs, threshold), "correlations": correlation_rows(runs)}
    tables["claims"] = claim_rows(runs, threshold, tables["phases"], tables["separation"], tables["large_activation"])
    return tables


def write_summary_tables(runs: list["RunData"], dest: str | os.PathLike,
                         threshold: float = 100.0) -> list[Path]:
    """Write ``summary_tables(runs)`` as ``dest/<name>.csv`` (atomically); returns the paths."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, table in summary_tables(runs, threshold).items():
        path = dest / f"{name}.csv"
        atomic_write_text(path, table.to_csv(index=False, float_format="%.6g"))
        paths.append(path)
    return paths
