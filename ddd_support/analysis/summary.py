"""Everything the verdicts need from one run, computed once: ``summarise_run``.

The claims (``claims``), the tables over seeds (``tables``), the text report (``report``)
and the chapters all read a ``RunSummary`` instead of recomputing its parts: each quantity
is computed once, for the schema the run has (the probe-wide large-activation table once, the
per-image one for schema 2, the stored top-neuron activations for schema 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ddd_support.analysis.ablation import ablation_summary
from ddd_support.analysis.large_activation import (
    DOMINANCE_MIN,
    GROWTH_MIN,
    best_correlations,
    candidate_layer,
    correlation_table,
    large_activation_table,
    largest_layer,
    neuron_activation,
    per_image_table,
    persistent_from,
    random_neuron_correlations,
    top_neuron_image_table,
)
from ddd_support.analysis.phases import detect_phases, test_set_size
from ddd_support.analysis.regeneralisation import (
    Curves,
    held_noisy_level,
    post_fit_change,
    sensitivity_grid,
    window_change,
)
from ddd_support.analysis.separation import (
    depth_trend,
    index_table,
    layer_index,
    layer_separation,
    separation_summary,
    separation_table,
)
from ddd_support.analysis.stats import percentile_rank
from ddd_support.runs.reader import RunData


@dataclass
class RunSummary:
    """The per-run quantities behind every claim (see each field's function)."""

    model: str
    seed: int
    profile: str
    n_layers: int
    n_test: int
    schema_version: int
    metrics: pd.DataFrame
    phases: dict[str, Any]            # phases.detect_phases
    peak_to_dip: dict[str, Any]       # the dip after the early peak, paired over images
    post_fit: dict[str, Any]          # regeneralisation.post_fit_change
    post_fit_grid: pd.DataFrame       # regeneralisation.sensitivity_grid
    held_noisy: float                 # regeneralisation.held_noisy_level
    separation_layers: pd.DataFrame   # per snapshot and layer: raw clean/noisy cosine (layer_separation)
    separation: pd.DataFrame          # per layer: raw clean/noisy cosine, first and last snapshot
    index: pd.DataFrame               # separation.layer_index: the index with its baselines
    depth: dict[str, Any] | None      # separation.depth_trend (None without the split-half baseline)
    probe_large: pd.DataFrame         # large_activation.large_activation_table (probe-wide top neuron)
    per_image: pd.DataFrame           # large_activation.per_image_table (empty for schema 1)
    large: dict[str, Any]             # the candidate layer's large activation, one row
    correlations: pd.DataFrame        # correlation_table of the candidate neuron
    ablation: dict[str, Any] | None   # ablation.ablation_summary, when an ablation is at hand

    @property
    def key(self) -> dict[str, Any]:
        return {"model": self.model, "seed": self.seed}


def summarise_run(run: RunData, threshold: float = 100.0, ablation: pd.DataFrame | None = None) -> RunSummary:
    """Compute every per-run quantity once (``ablation``: an ``ablation_table`` of the run, if any)."""
    phases = detect_phases(run.metrics, n_test=test_set_size(run)).as_dict()
    index = index_table(run)
    has_baseline = bool(index["split_half"].notna().any())
    layers = layer_separation(separation_table(run, by="true"))
    probe = large_activation_table(run, threshold=threshold)
    table = per_image_table(run)
    return RunSummary(
        model=run.model, seed=run.seed, profile=run.profile, n_layers=run.n_layers,
        n_test=test_set_size(run), schema_version=run.schema_version, metrics=run.metrics,
        phases=phases, peak_to_dip=peak_to_dip_change(run, phases), post_fit=post_fit_change(run),
        post_fit_grid=sensitivity_grid(run), held_noisy=held_noisy_level(run.metrics),
        separation_layers=layers, separation=separation_summary(layers),
        index=layer_index(index), depth=depth_trend(index) if has_baseline else None,
        probe_large=probe, per_image=table,
        large=_large_row(run, probe, table),
        correlations=_candidate_correlations(run, probe, table),
        ablation=None if ablation is None else ablation_summary(ablation),
    )


def peak_to_dip_change(run: "RunData | Curves", phases: dict[str, Any]) -> dict[str, Any]:
    """Change of test accuracy from the early peak to the dip after it (paired when recorded)."""
    peak, dip = phases["test_peak_epoch"], phases["test_dip_epoch"]
    if peak is None or dip is None:
        return {"peak_epoch": peak, "dip_epoch": dip, "change": np.nan, "low": np.nan, "high": np.nan,
                "method": ""}
    ci = window_change(run, [int(peak)], [int(dip)])
    return {"peak_epoch": int(peak), "dip_epoch": int(dip), "change": ci.estimate, "low": ci.low,
            "high": ci.high, "method": ci.method}


def _large_row(run: RunData, old: pd.DataFrame, table: pd.DataFrame) -> dict[str, Any]:
    """The candidate layer's large activation at the last snapshot (per-image measures), plus the
    probe-wide ratio; for schema-1 runs, which have no per-image statistics, the per-image ratio of
    the probe-wide top neuron from its stored activations (``top_neuron_image_table``)."""
    old_layer = largest_layer(old)
    old_last = old[(old["epoch"] == old["epoch"].max()) & (old["layer"] == old_layer)].iloc[0]
    old_first = old[(old["epoch"] == old["epoch"].min()) & (old["layer"] == old_layer)].iloc[0]
    row: dict[str, Any] = {"layers": run.n_layers, "probe_layer": old_layer, "probe_neuron": int(old_last["neuron"]),
                           "probe_ratio": float(old_last["ratio"]), "probe_ratio_at_init": float(old_first["ratio"]),
                           "growth_min": GROWTH_MIN, "dominance_min": DOMINANCE_MIN}
    if table.empty:
        top = top_neuron_image_table(run)
        last = top[top["epoch"] == top["epoch"].max()]
        best = last.loc[last["ratio"].fillna(-np.inf).idxmax()]
        return {**row, "recorded": False, "layer": int(best["layer"]), "neuron": int(best["neuron"]),
                "ratio": float(best["ratio"]), "ratio_q25": np.nan, "ratio_q75": np.nan,
                "ratio_at_init": float(best["ratio"] / best["growth"]), "growth": float(best["growth"]),
                "dominance": np.nan, "dominance_at_init": np.nan, "active": float(best["active"]),
                "exists": False, "since_epoch": None}
    layer, exists = candidate_layer(table)
    t = table[table["layer"] == layer].sort_values("epoch")
    last = t.iloc[-1]
    return {**row, "recorded": True, "layer": layer, "neuron": int(last["neuron"]), "ratio": float(last["ratio"]),
            "ratio_q25": float(last["ratio_q25"]), "ratio_q75": float(last["ratio_q75"]),
            "ratio_at_init": float(t["ratio"].iloc[0]), "growth": float(last["growth"]),
            "dominance": float(last["dominance"]), "dominance_at_init": float(last["dominance_at_init"]),
            "active": np.nan, "exists": exists, "since_epoch": persistent_from(table, layer)}


def _candidate_correlations(run: RunData, probe: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """Correlations of the candidate neuron at the last snapshot (``correlation_table``), with its
    best input and output |r| and the random-neuron baseline of the same layer in ``attrs``."""
    epoch = run.last_snapshot_epoch
    snap = run.snapshot(epoch)
    if table.empty:  # schema 1: the probe-wide top neuron of the largest layer
        corr = correlation_table(run, epoch=epoch, layer=largest_layer(probe, epoch))
    else:
        layer = candidate_layer(table)[0]
        neuron = int(table[(table["epoch"] == epoch) & (table["layer"] == layer)]["neuron"].iloc[0])
        kept = neuron_activation(snap, layer, neuron) is not None
        corr = correlation_table(run, epoch=epoch, layer=layer, neuron=neuron if kept else None)
    layer, neuron = int(corr.attrs["layer"]), int(corr.attrs["neuron"])
    act = neuron_activation(snap, layer, neuron)
    best = best_correlations(run, snap, layer, act)
    randoms = random_neuron_correlations(run, snap, layer)
    corr.attrs.update(**best, random_input_r=randoms["input_r"].tolist(),
                      random_output_r=randoms["output_r"].tolist(),
                      input_percentile=percentile_rank(best["input_r"], randoms["input_r"].to_numpy()))
    return corr

