"""Figures of a sweep (chapter 07), in the style of ``figures``: test error over the grid."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator, PercentFormatter

from ddd_support.figures.runs import MAX_WIDTH, OKABE_ITO, epoch_axis, outside_legend, styled
from ddd_support.analysis.large_activation import candidate_layer
from ddd_support.analysis.stats import HOLDS, INCONCLUSIVE, NOT_TESTABLE, RULED_OUT
from ddd_support.sweeps.results import with_width
from ddd_support.sweeps.scale_map import AXES, BASE, cell_label

#: One colour per noise rate (ordered light to dark is not colour-blind safe; these are).
NOISE_COLORS: tuple[str, ...] = (OKABE_ITO["black"], OKABE_ITO["sky blue"], OKABE_ITO["bluish green"],
                                 OKABE_ITO["orange"], OKABE_ITO["vermillion"], OKABE_ITO["reddish purple"],
                                 OKABE_ITO["blue"], OKABE_ITO["yellow"])


def width_label(widths: str) -> str:
    """``1024-1024-1024-1024`` as ``width 1024``; mixed widths stay as they are."""
    parts = str(widths).split("-")
    return f"width {parts[0]}" if len(set(parts)) == 1 else f"widths {widths}"


def _width_order(table: pd.DataFrame) -> list[str]:
    return list(with_width(table).sort_values("width")["widths"].drop_duplicates())


@styled
def plot_error_heatmaps(epochs: pd.DataFrame, table: pd.DataFrame, title: str) -> Figure:
    """Test error (colour) over epoch (x) and noise rate (y), one panel per width; one colour scale.

    A white dot marks each row's lowest test error: where it sits left of the end, the error
    rose again afterwards. The colour scale spans the errors after the first epoch, so that the
    initialised networks (epoch 0, near 90%) do not wash out the rest: they show at its top.
    """
    data = epochs.merge(table[["point", "model", "seed", "widths"]], on=["point", "model", "seed"])
    widths = _width_order(table)
    rates = sorted(data["noise_rate"].unique())
    error = 1 - data.loc[data["epoch"] >= 1, "test_acc"]
    vmin, vmax = float(error.min()), float(error.max())
    # Two panels a row: four side by side leave each about an inch and a half, too little for the
    # epoch labels (0, 1, 10, 100) of neighbouring panels to stay apart.
    ncols = min(len(widths), 2)
    nrows = -(-len(widths) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(MAX_WIDTH, 0.8 + 2.3 * nrows), sharey=True, squeeze=False,
                             layout="constrained")
    fig.get_layout_engine().set(wspace=0.06, hspace=0.04)
    mesh = None
    for ax, width in zip(axes.flat, widths):
        part = data[data["widths"] == width]
        grid = (1 - part.pivot_table(index="noise_rate", columns="epoch", values="test_acc")).reindex(rates)
        epoch_values = grid.columns.to_numpy(dtype=float)
        edges = np.concatenate([[-0.5], (epoch_values[:-1] + epoch_values[1:]) / 2, [epoch_values[-1] + 0.5]])
        mesh = ax.pcolormesh(edges, np.arange(len(rates) + 1) - 0.5, grid.to_numpy(), cmap="magma_r",
                             vmin=vmin, vmax=vmax, shading="flat")
        best = grid.to_numpy().argmin(axis=1)
        ax.scatter(epoch_values[best], np.arange(len(rates)), s=18, color="white", edgecolor="black",
                   linewidth=0.6, zorder=3)
        epoch_axis(ax, epoch_values[-1], label="")
        ax.set_xticks([t for t in (0, 1, 10, 100, 1000) if t <= epoch_values[-1]])
        ax.set_title(width_label(width))
        ax.grid(False)
        ax.set_yticks(np.arange(len(rates)), [f"{r:.0%}" for r in rates])
    for ax in axes.flat[len(widths):]:
        ax.set_visible(False)
    fig.supxlabel("epoch (log scale)", fontsize=12)
    fig.supylabel("label noise", fontsize=12)
    bar = fig.colorbar(mesh, ax=axes.ravel().tolist(), fraction=0.04, aspect=30, pad=0.02)
    bar.set_label("test error")
    bar.formatter = PercentFormatter(1.0, decimals=0)
    bar.update_ticks()
    fig.suptitle(title)
    return fig


@styled
def plot_error_by_width(table: pd.DataFrame, title: str) -> Figure:
    """Final (solid) and best-epoch (dashed) test error against hidden width, one line per noise rate."""
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    first = with_width(table)
    for color, (rate, part) in zip(NOISE_COLORS, first.groupby("noise_rate")):
        part = part.sort_values("width")
        x = np.log2(part["width"])
        ax.plot(x, 1 - part["final_test_acc"], "-o", color=color, label=f"{rate:.0%} noise, end")
        ax.plot(x, 1 - part["best_test_acc"], "--", color=color, alpha=0.7, linewidth=1.2)
    ax.plot([], [], "--", color="grey", label="each: its best epoch")
    _finish_width_axes(ax, first["width"], "test error", title)
    return fig


@styled
def plot_rise(table: pd.DataFrame, title: str) -> Figure:
    """The overfitting rise with its 95% interval against width, one series per noise rate."""
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    first = with_width(table)
    rates = sorted(first["noise_rate"].unique())
    offsets = np.linspace(-0.12, 0.12, len(rates)) if len(rates) > 1 else [0.0]
    for color, offset, rate in zip(NOISE_COLORS, offsets, rates):
        part = first[first["noise_rate"] == rate].sort_values("width")
        x = np.log2(part["width"]) + offset
        ax.errorbar(x, part["rise"], yerr=[part["rise"] - part["rise_low"], part["rise_high"] - part["rise"]],
                    fmt="o-", color=color, capsize=3, label=f"{rate:.0%} noise")
    ax.axhline(0, color="grey", linewidth=1)
    _finish_width_axes(ax, first["width"], "rise of test error\nbest epoch → end (points)", title)
    return fig


def _finish_width_axes(ax: plt.Axes, widths: pd.Series, ylabel: str, title: str) -> None:
    """Width on a log2 axis ticked at the sweep's widths, y in whole percent, legend outside."""
    ticks = sorted(widths.unique())
    ax.set_xticks(np.log2(ticks), [str(w) for w in ticks])
    ax.minorticks_off()
    ax.yaxis.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 5, 10]))
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_xlabel("hidden width (log scale)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    outside_legend(ax)


# --------------------------------------------------------------------------- the scale map (chapter 08)
#: Colour and marker of a run's verdict on the scale map (all four verdicts, each its own shape too).
VERDICT_STYLES: dict[str, tuple[str, str]] = {
    HOLDS: (OKABE_ITO["bluish green"], "o"), RULED_OUT: (OKABE_ITO["vermillion"], "v"),
    INCONCLUSIVE: (OKABE_ITO["sky blue"], "s"), NOT_TESTABLE: ("#999999", "D"),
}


def axis_value_label(value: float, base: bool) -> str:
    """A tick label of the scale map: thousands as ``2.5k``, ``10k``; ``(base)`` under the base value."""
    text = f"{value / 1000:g}k" if abs(value) >= 1000 else f"{value:g}"
    return text + ("\n(base)" if base else "")


@styled
def plot_finding_map(runs: pd.DataFrame, cells: pd.DataFrame, title: str, ylabel: str,
                     threshold: float | None = None, log: bool = False, scale: float = 1.0) -> Figure:
    """One panel per axis of the scale map: each run's statistic (its verdict's colour and marker) and
    each cell's mean with its interval (black), at the base value and the axis's other values; one
    legend below the panels, naming the verdicts the figure shows.

    ``runs``: ``scale_map.finding_runs``; ``cells``: ``scale_map.finding_cells``; ``threshold``:
    a dashed line where the verdict's cut lies; ``scale`` multiplies the statistic (100: points).
    """
    axes_shown = [a for a in AXES if (cells["axis"] == a).any()]
    base_cells = cells[cells["axis"] == BASE]
    parts = []
    for axis in axes_shown:
        part = cells[cells["axis"].isin([axis, BASE])].copy()
        base_value = runs.loc[runs["axis"] == BASE, axis].iloc[0] if len(base_cells) else None
        part["x"] = [base_value if a == BASE else v for a, v in zip(part["axis"], part["value"])]
        parts.append((axis, part, base_value, sorted(part["x"].unique())))
    fig, panels = plt.subplots(1, max(len(axes_shown), 1), figsize=(MAX_WIDTH, 3.6), sharey=True, squeeze=False,
                               layout="constrained", width_ratios=[len(order) for *_, order in parts] or None)
    shown: set[str] = set()
    for ax, (axis, part, base_value, order) in zip(panels[0], parts):
        pos = {v: i for i, v in enumerate(order)}
        for row in part.itertuples():
            seeds = runs[runs["point"] == row.point]
            jitter = np.linspace(-0.12, 0.12, len(seeds)) if len(seeds) > 1 else [0.0]
            for (_, r), dx in zip(seeds.iterrows(), jitter):
                if np.isfinite(r["statistic"]):
                    color, marker = VERDICT_STYLES.get(r["verdict"], ("grey", "o"))
                    ax.plot(pos[row.x] + dx, scale * r["statistic"], marker, markersize=5, alpha=0.9, color=color)
                    shown.add(r["verdict"])
            if np.isfinite(row.mean):
                lo = row.low if np.isfinite(row.low) else row.mean
                hi = row.high if np.isfinite(row.high) else row.mean
                ax.errorbar(pos[row.x] + 0.25, scale * row.mean,
                            yerr=[[scale * (row.mean - lo)], [scale * (hi - row.mean)]],
                            fmt="_", color="black", capsize=3, markersize=10)
        ax.set_xticks(range(len(order)), [axis_value_label(v, v == base_value) for v in order])
        ax.set_xlim(-0.6, len(order) - 0.4)
        ax.set_xlabel(AXES[axis][0].replace(" ", "\n"))
        ax.grid(axis="x", visible=False)
        if threshold is not None:
            ax.axhline(scale * threshold, color="grey", linestyle="--", linewidth=1)
    if log:
        panels[0][0].set_yscale("log")
    panels[0][0].set_ylabel(ylabel)
    handles = [Line2D([], [], linestyle="", marker=marker, color=color, label=f"one run: {verdict}")
               for verdict, (color, marker) in VERDICT_STYLES.items() if verdict in shown]
    handles.append(panels[0][-1].errorbar([], [], yerr=[], fmt="_", color="black", capsize=3,
                                          label="cell mean, 95% interval"))
    fig.legend(handles=handles, loc="outside lower center", ncols=3, frameon=False)
    fig.suptitle(title)
    return fig


@styled
def plot_growth_over_epochs(activation: pd.DataFrame, axes: pd.DataFrame, title: str,
                            threshold: float = 2.0) -> Figure:
    """The large activation's growth (per-image ratio over its initial value) against epoch, one line
    per run, for the layer that is each run's candidate at its end; one colour per point."""
    fig, ax = plt.subplots(figsize=(8.0, 3.6))
    labels = {(r.point, r.model): cell_label(r.axis, getattr(r, r.axis) if r.axis in AXES else None, r.point, r.model)
              for r in axes.itertuples()}
    order = list(dict.fromkeys(labels.values()))
    shown: set[str] = set()
    for (point, model, _), table in activation.groupby(["point", "model", "seed"], sort=False):
        layer, _ = candidate_layer(table)
        line = table[table["layer"] == layer].sort_values("epoch")
        label = labels.get((point, model), point)
        color = NOISE_COLORS[order.index(label) % len(NOISE_COLORS)] if label in order else "grey"
        ax.plot(line["epoch"], line["growth"], color=color, linewidth=1.3, alpha=0.85,
                label=None if label in shown else label)
        shown.add(label)
    ax.axhline(threshold, color="grey", linestyle="--", linewidth=1)
    epoch_axis(ax, float(activation["epoch"].max()))
    ax.set_ylabel("growth of the per-image ratio\n(x its value at initialisation)")
    ax.set_title(title)
    outside_legend(ax)
    return fig
