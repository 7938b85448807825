"""A plain-text report of one run (phases, separation, large activation) plus its figures."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ddd_support.analysis.ablation import stored_ablation
from ddd_support.analysis.claims import claims_from
from ddd_support.analysis.large_activation import dominant_neuron, emergence_epoch, largest_layer
from ddd_support.analysis.phases import Phases
from ddd_support.analysis.summary import summarise_run
from ddd_support.data.noise import transition_matrix
from ddd_support.figures import runs as fg
from ddd_support.runs.reader import RunData, load_run

FIGURE_DIR = "figures"


def analyze(run_dir: str | os.PathLike | RunData, write_figures: bool = True,
            threshold: float = 100.0) -> str:
    """The summaries and verdicts of a run as text; with ``write_figures`` also PNGs in ``<run_dir>/figures/``."""

    run = run_dir if isinstance(run_dir, RunData) else load_run(run_dir)
    summary = summarise_run(run, threshold, stored_ablation(run))
    phases = Phases(**summary.phases)
    sep, table, corr = summary.separation_layers, summary.probe_large, summary.correlations
    claims = claims_from(summary, threshold)
    sections = [
        f"Run {run.path}: {run.name}, profile {run.profile}, {run.n_layers} hidden layers "
        f"{list(run.widths)}, {run.metrics['epoch'].max()} epochs ({run.status}), "
        f"{len(run.snapshot_epochs)} snapshots",
        _section("Verdicts (statistic, 95% interval, smallest effect of interest, Holm-adjusted p, outcome)",
                 claims[["claim", "statistic", "low", "high", "effect", "p_holds_holm", "verdict", "outcome"]]
                 .to_string(index=False, float_format="{:+.3f}".format)),
        _section("Phases (epochs; accuracies are fractions)", _phase_text(phases)),
        _section("Separation index by layer, first and last snapshot (0 = split-half baseline)",
                 summary.index[summary.index["epoch"].isin([summary.index["epoch"].min(), summary.index["epoch"].max()])]
                 .to_string(index=False, float_format="{:.3f}".format)),
        _section("Large activation (probe-wide top neuron per layer)", _large_text(table, threshold)),
        _section(f"Correlations of layer {corr.attrs['layer']} neuron {corr.attrs['neuron']} "
                 f"(epoch {corr.attrs['epoch']}, {int(corr['n'].iloc[0])} probe samples)",
                 corr[["quantity", "kind", "pearson", "pearson_low", "pearson_high", "spearman"]]
                 .to_string(index=False, float_format="{:+.2f}".format)),
    ]
    if write_figures:
        written = write_run_figures(run, phases, sep, table, corr)
        sections.append(_section("Figures", "\n".join(str(p) for p in written)))
    return "\n\n".join(sections) + "\n"


def write_run_figures(run: RunData, phases: Phases, sep: pd.DataFrame, table: pd.DataFrame,
                      corr: pd.DataFrame) -> list[Path]:
    """Write the standard figures of one run as PNGs into ``<run>/figures/``; returns their paths."""

    layer = int(corr.attrs["layer"])
    made = {
        "four_way_acc": lambda: fg.plot_four_way(run, phases, "acc"),
        "four_way_loss": lambda: fg.plot_four_way(run, phases, "loss"),
        "separation_heatmap": lambda: fg.plot_separation_heatmap(sep),
        "separation_curves": lambda: fg.plot_separation_curves(sep),
        "large_activation": lambda: fg.plot_large_activation(table, run.metrics),
        f"activation_histogram_layer{layer}": lambda: fg.plot_activation_histogram(
            run.snapshot(run.last_snapshot_epoch), layer, ratio=float(
                table[(table["epoch"] == table["epoch"].max()) & (table["layer"] == layer)]["ratio"].iloc[0])),
        "correlations": lambda: fg.plot_correlations(corr),
        "noise_transition": lambda: fg.plot_noise_transition(
            transition_matrix(run.labels["original"], run.labels["noisy"])),
    }
    out_dir = run.path / FIGURE_DIR
    out_dir.mkdir(exist_ok=True)
    paths = []
    for name, make in made.items():
        fig = make()
        path = out_dir / f"{name}.png"
        fig.savefig(path, dpi=150, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)
    return paths


def _section(title: str, body: str) -> str:
    return f"{title}\n{'-' * len(title)}\n{body}"


def _phase_text(phases: Phases) -> str:
    def fmt(v: object) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.3f}"
        return str(v)

    items = phases.as_dict()
    width = max(map(len, items))
    return "\n".join(f"{k:<{width}}  {fmt(v)}" for k, v in items.items())


def _large_text(table: pd.DataFrame, threshold: float) -> str:
    last = int(table["epoch"].max())
    layer = largest_layer(table, last)
    row = table[(table["epoch"] == last) & (table["layer"] == layer)].iloc[0]
    emerged = emergence_epoch(table, layer, threshold)
    dom = dominant_neuron(table, layer, min_epoch=emerged or 0)
    since = f" from epoch {emerged} on" if emerged is not None else ""
    per_layer = (table[table["epoch"] == last][["layer", "neuron", "value", "median", "ratio"]]
                 .to_string(index=False, float_format="{:.3g}".format))
    peak = table.loc[table["ratio"].fillna(-np.inf).idxmax()]
    lines = [
        f"largest ratio at epoch {last}: layer {layer}, neuron {int(row['neuron'])}, "
        f"|a| = {row['value']:.3g}, {row['ratio']:.1f}x the median non-zero activation",
        f"largest ratio over all snapshots: {peak['ratio']:.1f}x (layer {int(peak['layer'])}, "
        f"epoch {int(peak['epoch'])})",
        f"emergence (ratio >= {threshold:g} from then on): "
        + (f"epoch {emerged}" if emerged is not None else "never within the recorded epochs"),
        f"dominance: neuron {dom.neuron} is the top neuron of layer {layer} in "
        f"{dom.fraction:.0%} of the {dom.n_snapshots} snapshots{since}",
        f"top neuron per layer at epoch {last}:",
        per_layer,
    ]
    return "\n".join(lines)

