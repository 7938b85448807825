"""Figures of the book: one function per analysis, each returning a matplotlib Figure.

One style everywhere: the Okabe-Ito colour-blind-safe palette, the four splits always named
by ``SPLIT_LABELS`` and drawn in ``SPLIT_COLORS`` / ``SPLIT_STYLES``, epoch axes on a
symmetric-log scale (linear between 0 and 1, so the initialised model at epoch 0 stays
visible), widths at most 10 inches. Figures are made through pyplot, so a notebook shows
one at the end of its cell; assign the result (``fig = plot_...``) to avoid a second copy,
and ``plt.close(fig)`` when saving many.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator, PercentFormatter

from ddd_support.analysis.large_activation import REFERENCE_NAMES, reference_magnitude
from ddd_support.data.cifar import CLASSES
from ddd_support.runs.schema import SPLITS

if TYPE_CHECKING:
    from ddd_support.analysis.phases import Phases
    from ddd_support.runs.reader import RunData

#: Okabe & Ito (2008) colour-blind-safe palette.
OKABE_ITO: dict[str, str] = {
    "black": "#000000", "orange": "#E69F00", "sky blue": "#56B4E9", "bluish green": "#009E73",
    "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "reddish purple": "#CC79A7",
}
SPLIT_LABELS: dict[str, str] = {
    "clean": "clean train", "noisy": "noisy train (noisy labels)",
    "noisy_true": "noisy train (true labels)", "test": "test",
}
SPLIT_COLORS: dict[str, str] = {
    "clean": OKABE_ITO["blue"], "noisy": OKABE_ITO["vermillion"],
    "noisy_true": OKABE_ITO["reddish purple"], "test": OKABE_ITO["black"],
}
SPLIT_STYLES: dict[str, str] = {"clean": "-", "noisy": "-", "noisy_true": "--", "test": "-"}
KIND_COLORS: dict[str, str] = {"input": OKABE_ITO["blue"], "output": OKABE_ITO["vermillion"]}
PHASE_SHADE = "#DDDDDD"
LAYER_CMAP = "viridis"
#: Figures are drawn at FIGURE_DPI and at most MAX_WIDTH inches wide: 700 pixels, which the book's
#: text column shows at (nearly) full size, so that figure text keeps its size on the page.
FIGURE_DPI = 100
MAX_WIDTH = 7.0
#: No text in a figure is smaller than MIN_FONT_PT points, 15 pixels at FIGURE_DPI: about the
#: size of the book's body text (16 px). ``styled`` raises any smaller text to it.
MIN_FONT_PT = 11.0
STYLE: dict[str, Any] = {
    "figure.dpi": FIGURE_DPI, "savefig.dpi": 150, "savefig.bbox": "tight",
    "font.size": 12, "axes.titlesize": 13, "axes.labelsize": 12, "legend.fontsize": MIN_FONT_PT,
    "xtick.labelsize": MIN_FONT_PT, "ytick.labelsize": MIN_FONT_PT, "figure.titlesize": 13,
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
    "grid.alpha": 0.3, "lines.linewidth": 1.8,
}
EPOCH_LABEL = "epoch (log scale; 0 = initialisation)"


def styled(func: Callable[..., Figure]) -> Callable[..., Figure]:
    """Run a figure function inside the package style, then fit the figure to the book's column
    (``fit_to_column``)."""
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Figure:
        # Resolve the backend first: otherwise rc_context restores an unresolved backend and
        # interactive mode, and a fresh notebook kernel shows only the first figure.
        plt.get_backend()
        interactive = plt.isinteractive()
        with plt.rc_context({**STYLE, "interactive": interactive}):
            return fit_to_column(func(*args, **kwargs))
    return wrapper


def fit_to_column(fig: Figure) -> Figure:
    """At most ``MAX_WIDTH`` inches wide (the height shrinks less than the width, since the text
    keeps its size), drawn at ``FIGURE_DPI``, with no text smaller than ``MIN_FONT_PT``."""
    if fig.get_layout_engine() is None:  # room for larger text, and a legend beside the axes
        fig.set_layout_engine("constrained")  # stays inside the figure instead of widening the image
    width, height = fig.get_size_inches()
    if width > MAX_WIDTH:
        scale = MAX_WIDTH / width
        fig.set_size_inches(MAX_WIDTH, height * scale ** 0.5)
    fig.set_dpi(FIGURE_DPI)
    for ax in fig.axes:  # ticks made later, when the figure is drawn, copy these sizes
        for name in ("x", "y"):
            axis = getattr(ax, f"{name}axis")
            labels = axis.get_ticklabels(which="both")
            size = max([MIN_FONT_PT, *(label.get_fontsize() for label in labels)])
            ax.tick_params(axis=name, which="both", labelsize=size)
    for text in fig.findobj(Text):
        if text.get_text() and text.get_fontsize() < MIN_FONT_PT:
            text.set_fontsize(MIN_FONT_PT)
    titles = [ax.title for ax in fig.axes] + ([fig._suptitle] if fig._suptitle else [])
    labels = [axis.label for ax in fig.axes for axis in (ax.xaxis, ax.yaxis)]
    for text in titles + labels:
        text.set_wrap(True)  # long titles and labels break into lines instead of overflowing
    return fig


def epoch_axis(ax: plt.Axes, last_epoch: float | None = None, label: str = EPOCH_LABEL) -> None:
    """Symmetric-log epoch axis: linear on [0, 1], logarithmic beyond, ticks at 1-2-5 steps."""
    ax.set_xscale("symlog", linthresh=1.0, linscale=0.5)
    last = last_epoch if last_epoch is not None else ax.get_xlim()[1]
    ticks = [0] + [m * 10 ** k for k in range(0, 7) for m in (1, 2, 5) if m * 10 ** k <= last * 1.05]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(0, last)
    ax.set_xlabel(label)


def log_y_axis(ax: plt.Axes) -> None:
    """Logarithmic y axis labelled in plain numbers (10, 20, 30, 50, ...), also between decades."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))

    def minor(v: float, _: int) -> str:  # every minor tick within a decade, else 2, 3 and 5 only
        low, high = ax.get_ylim()
        narrow = low > 0 and high / low < 10
        return f"{v:g}" if narrow or f"{v:g}"[0] in "235" else ""

    ax.yaxis.set_minor_formatter(FuncFormatter(minor))


def outside_legend(ax: plt.Axes, **kwargs: Any) -> None:
    """Legend to the right of the axes, so it never hides a curve."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, borderaxespad=0, **kwargs)


def shared_legend(fig: Figure, axes: Sequence[plt.Axes], ncols: int = 2, title: str | None = None,
                  loc: str = "outside lower center") -> None:
    """One legend for the whole figure, outside every axes (below them by default): each label once,
    in the order the axes first show it."""
    entries: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if not label.startswith("_"):
                entries.setdefault(label, handle)
    if entries:
        fig.legend(list(entries.values()), list(entries), loc=loc, ncols=ncols, frameon=False, title=title)


def panel_title(ax: plt.Axes, text: str) -> None:
    """A panel's title, from the left edge of its axes: wrapped at the figure's edge, it never runs
    into a label left of the axes."""
    ax.set_title(text, loc="left", fontsize=MIN_FONT_PT + 1, wrap=True)


def panel_rows(heights: Sequence[float], sharex: bool = False, extra: float = 0.0,
               **kwargs: Any) -> tuple[Figure, list[plt.Axes]]:
    """A figure of the column's width with one row of axes per panel, as tall as ``heights`` (inches)
    plus ``extra`` (for a shared legend or title)."""
    fig, axes = plt.subplots(len(heights), 1, layout="constrained", squeeze=False, sharex=sharex,
                             figsize=(MAX_WIDTH, sum(heights) + extra), height_ratios=list(heights), **kwargs)
    return fig, list(axes[:, 0])


def layer_colors(n_layers: int) -> list[tuple[float, ...]]:
    """One colour per hidden layer, shallow (dark) to deep (light)."""
    cmap = plt.get_cmap(LAYER_CMAP)
    return [cmap(x) for x in np.linspace(0.0, 0.85, max(n_layers, 1))]


# --------------------------------------------------------------------------- four-way curves
@styled
def plot_four_way(runs_or_metrics: "pd.DataFrame | RunData | Sequence[RunData]",
                  phases: "Phases | None" = None, metric: str = "acc",
                  title: str | None = None) -> Figure:
    """Accuracy or loss of the four splits per epoch; several runs give a mean line and a min-max band."""
    _check_metric(metric)
    frames, name = _metric_frames(runs_or_metrics)
    fig, ax = plt.subplots(layout="constrained", figsize=(9, 4.5))
    _draw_four_way(ax, frames, phases, metric)
    seeds = f" (mean and range of {len(frames)} seeds)" if len(frames) > 1 else ""
    ax.set_title(title or f"{name}{seeds}:\n{_four_way_finding(phases, metric)}")
    outside_legend(ax)
    return fig


@styled
def plot_four_way_panels(groups: "Mapping[str, Sequence[RunData]]",
                         phases: "Mapping[str, Phases] | None" = None, metric: str = "acc",
                         title: str | None = None, prefix: str = "") -> Figure:
    """``plot_four_way`` for several models in one figure: one panel per entry of ``groups`` (its
    runs, e.g. the seeds of one model), each titled with its finding, and one legend below them.

    The phase lines are named without their epochs here (the legend is shared); each panel's
    title states its own. ``prefix`` starts every panel title (e.g. the profile).
    """
    _check_metric(metric)
    fig, axes = panel_rows([2.6] * len(groups), extra=1.0 + (0.3 if title else 0.0))
    for ax, (key, runs) in zip(axes, groups.items()):
        frames, name = _metric_frames(runs)
        ph = phases.get(key) if phases is not None else None
        _draw_four_way(ax, frames, ph, metric, epochs_in_labels=False)
        seeds = f", {len(frames)} seeds" if len(frames) > 1 else ""
        panel_title(ax, f"{prefix}{name}{seeds}: {_four_way_finding(ph, metric)}")
    for ax in axes[:-1]:
        ax.set_xlabel("")
    shared_legend(fig, axes, title="band: min to max over seeds" if any(
        len(_metric_frames(runs)[0]) > 1 for runs in groups.values()) else None)
    if title:
        fig.suptitle(title)
    return fig


def _check_metric(metric: str) -> None:
    if metric not in ("acc", "loss"):
        raise ValueError(f"metric must be 'acc' or 'loss', got {metric!r}")


def _draw_four_way(ax: plt.Axes, frames: list[pd.DataFrame], phases: "Phases | None", metric: str,
                   epochs_in_labels: bool = True) -> None:
    last_epoch = max(float(f["epoch"].max()) for f in frames)
    for split in SPLITS:
        col = f"{split}_{metric}"
        values = pd.concat([f.set_index("epoch")[col].rename(i) for i, f in enumerate(frames)], axis=1)
        mean = values.mean(axis=1)
        ax.plot(mean.index, mean.to_numpy(), color=SPLIT_COLORS[split], ls=SPLIT_STYLES[split],
                label=SPLIT_LABELS[split])
        if len(frames) > 1:
            ax.fill_between(mean.index, values.min(axis=1), values.max(axis=1),
                            color=SPLIT_COLORS[split], alpha=0.18, lw=0)
    epoch_axis(ax, last_epoch)
    if metric == "acc":
        ax.set_ylabel("accuracy")
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_ylim(0, 1.02)
    else:
        ax.set_ylabel("cross-entropy loss (nats)")
    if phases is not None:
        _mark_phases(ax, phases, metric, epochs_in_labels)


def _metric_frames(obj: Any) -> tuple[list[pd.DataFrame], str]:
    if isinstance(obj, pd.DataFrame):
        return [obj], "Run"
    runs = [obj] if hasattr(obj, "metrics") else list(obj)
    if not runs:
        raise ValueError("no runs given")
    models = sorted({r.model.upper() for r in runs})
    return [r.metrics for r in runs], " / ".join(models)


def _mark_phases(ax: plt.Axes, ph: "Phases", metric: str, epochs_in_labels: bool = True) -> None:
    if ph.noisy_fit_start_epoch is not None:
        end = ph.noisy_fit_end_epoch if ph.noisy_fit_end_epoch is not None else ph.last_epoch
        ax.axvspan(ph.noisy_fit_start_epoch, end, color=PHASE_SHADE, alpha=0.6, lw=0,
                   label="fitting the noisy labels", zorder=0)
    marks = ([("test peak", ph.test_peak_epoch), ("test dip", ph.test_dip_epoch),
              ("99% of noisy labels fitted", ph.noisy_fit_end_epoch)] if metric == "acc"
             else [("test-loss minimum", ph.test_loss_min_epoch), ("test-loss peak", ph.test_loss_peak_epoch)])
    styles = [":", "--", "-."]
    for (label, epoch), ls in zip(marks, styles):
        if epoch is not None:
            ax.axvline(epoch, color=OKABE_ITO["bluish green"], ls=ls, lw=1.2,
                       label=f"{label} (epoch {epoch})" if epochs_in_labels else label)


def _four_way_finding(ph: "Phases | None", metric: str) -> str:
    if ph is None:
        return "four-way accuracy" if metric == "acc" else "four-way loss"
    if metric == "loss":
        if ph.test_loss_peak_epoch is None:
            return f"test loss ends at {ph.test_loss_final:.2f}"
        tail = "then descends again" if ph.test_loss_second_descent else "and stays high"
        return f"test loss peaks at epoch {ph.test_loss_peak_epoch} ({ph.test_loss_peak:.2f}) {tail}"
    if ph.test_peak_epoch is None:
        return f"no early test peak; final test accuracy {ph.final_test_acc:.1%}"
    text = (f"test accuracy peaks at epoch {ph.test_peak_epoch} ({ph.test_peak_acc:.1%}), "
            f"dips to {ph.test_dip_acc:.1%} at epoch {ph.test_dip_epoch}")
    return f"{text}, ends at {ph.final_test_acc:.1%}"


# --------------------------------------------------------------------------- separation
@styled
def plot_separation_heatmap(layer_table: pd.DataFrame, title: str | None = None,
                            vmin: float | None = None) -> Figure:
    """Class-averaged clean-vs-noisy cosine as a layer x snapshot-epoch heatmap.

    ``vmin`` fixes the low end of the colour scale (the high end is 1), so that several
    heatmaps share one scale.
    """
    pivot = layer_table.pivot(index="layer", columns="epoch", values="cosine").sort_index()
    fig, ax = plt.subplots(layout="constrained", figsize=(min(MAX_WIDTH, 3 + 0.35 * pivot.shape[1]), 1.2 + 0.45 * len(pivot)))
    image = _cosine_heatmap(ax, pivot, vmin)
    fig.colorbar(image, ax=ax, label="cosine (clean vs noisy class means)")
    ax.set_title(title or _separation_finding(pivot))
    return fig


@styled
def plot_separation_heatmaps(layer_tables: "Mapping[str, pd.DataFrame]", vmin: float | None = None,
                             titles: "Mapping[str, str] | None" = None) -> Figure:
    """``plot_separation_heatmap`` for several models (the keys) in one figure: one panel per model,
    as tall as its number of layers, on one colour scale with one colour bar.

    ``vmin`` fixes the low end of the colour scale (default: the lowest cosine of all models);
    ``titles`` starts each panel's title (default: the model's name in capitals).
    """
    pivots = {key: t.pivot(index="layer", columns="epoch", values="cosine").sort_index()
              for key, t in layer_tables.items()}
    low = min(float(np.nanmin(p.to_numpy())) for p in pivots.values()) if vmin is None else vmin
    fig, axes = panel_rows([0.9 + 0.3 * len(p) for p in pivots.values()], extra=0.9)
    image = None
    for ax, (key, pivot) in zip(axes, pivots.items()):
        image = _cosine_heatmap(ax, pivot, low)
        name = (titles or {}).get(key, str(key).upper())
        last = pivot.iloc[:, -1]
        panel_title(ax, f"{name}, epoch {pivot.columns[-1]}: cosine {last.iloc[0]:.2f} in layer {last.index[0]}, "
                        f"{last.iloc[-1]:.2f} in layer {last.index[-1]}")
    for ax in axes[:-1]:
        ax.set_xlabel("")
    # Below the panels, so that each panel's title has the figure's width.
    fig.colorbar(image, ax=axes, label="cosine (clean vs noisy class means)", location="bottom",
                 fraction=0.05, aspect=40, shrink=0.8)
    return fig


#: Most tick labels an epoch axis of snapshots gets: 11-point labels of up to four digits side by
#: side in a heatmap of the column's width.
MAX_EPOCH_TICKS = 10


def _cosine_heatmap(ax: plt.Axes, pivot: pd.DataFrame, vmin: float | None) -> Any:
    image = ax.imshow(pivot.to_numpy(), aspect="auto", cmap="viridis", origin="upper",
                      vmin=np.nanmin(pivot.to_numpy()) if vmin is None else vmin, vmax=1.0,
                      interpolation="nearest")
    ax.grid(False)
    step = max(1, int(np.ceil(pivot.shape[1] / MAX_EPOCH_TICKS)))
    ax.set_xticks(range(0, pivot.shape[1], step), [str(e) for e in pivot.columns[::step]])
    ax.set_yticks(range(len(pivot)), [str(layer) for layer in pivot.index])
    ax.set_xlabel("epoch of snapshot")
    ax.set_ylabel("hidden layer")
    return image


@styled
def plot_separation_curves(layer_table: pd.DataFrame, title: str | None = None) -> Figure:
    """Class-averaged clean-vs-noisy cosine per layer over epochs."""
    pivot = layer_table.pivot(index="layer", columns="epoch", values="cosine").sort_index()
    fig, ax = plt.subplots(layout="constrained", figsize=(9, 4.5))
    for color, (layer, row) in zip(layer_colors(len(pivot)), pivot.iterrows()):
        ax.plot(row.index, row.to_numpy(), marker="o", ms=3, color=color, label=f"layer {layer}")
    epoch_axis(ax, float(pivot.columns.max()))
    ax.set_ylabel("cosine (clean vs noisy class means)")
    outside_legend(ax)
    ax.set_title(title or _separation_finding(pivot))
    return fig


def _separation_finding(pivot: pd.DataFrame) -> str:
    last = pivot.iloc[:, -1]
    first_layer, last_layer = last.index[0], last.index[-1]
    return (f"Clean vs noisy class means at epoch {pivot.columns[-1]}:\ncosine {last.iloc[0]:.2f} "
            f"in layer {first_layer}, {last.iloc[-1]:.2f} in layer {last_layer}")


#: One colour per model, wherever models share an axis.
MODEL_COLORS: dict[str, str] = {"mlp3": OKABE_ITO["orange"], "mlp5": OKABE_ITO["bluish green"],
                                "mlp7": OKABE_ITO["blue"]}


@styled
def plot_seed_spread(table: pd.DataFrame, x: str, y: str, ylabel: str, title: str,
                     xlabel: str | None = None, log_epochs: bool = False, log_y: bool = False) -> Figure:
    """Across seeds, per model: the mean of ``y`` against ``x`` with a min-max band.

    ``table`` has one row per model, seed and ``x`` (e.g. layer or epoch); only the ``x``
    values that every seed of a model has are drawn. ``log_epochs`` draws ``x`` on the
    book's epoch axis.
    """
    fig, ax = plt.subplots(layout="constrained", figsize=(9, 4.5))
    for model, rows in table.groupby("model", sort=False):
        n = rows["seed"].nunique()
        shared = rows.groupby(x)["seed"].nunique() == n   # only x values every seed has
        stats = rows[rows[x].isin(shared.index[shared])].groupby(x)[y].agg(["mean", "min", "max"])
        color = MODEL_COLORS.get(str(model), OKABE_ITO["black"])
        ax.plot(stats.index, stats["mean"], marker="o", ms=4, color=color,
                label=f"{str(model).upper()} (mean of {n} seed{'s' if n > 1 else ''})")
        if n > 1:
            ax.fill_between(stats.index, stats["min"], stats["max"], color=color, alpha=0.2, lw=0)
    if log_epochs:
        epoch_axis(ax, float(table[x].max()))
    else:
        ax.set_xlabel(xlabel or x)
        ax.xaxis.set_major_locator(FixedLocator(sorted(table[x].unique())))
    values = table[y].to_numpy(dtype=float)
    if log_y and np.nanmin(values) > 0 and np.nanmax(values) / np.nanmin(values) > 10:
        log_y_axis(ax)  # within one decade a linear axis reads better
    ax.set_ylabel(ylabel)
    outside_legend(ax, title="band: min to max over seeds")
    ax.set_title(title)
    return fig


def test_accuracy_twin(ax: plt.Axes, metrics: pd.DataFrame, legend_title: str | None = None,
                       legend: bool = True) -> plt.Axes:
    """Test accuracy (dotted) on a right-hand axis, and (``legend``) one legend for both axes to the
    right; returns the right-hand axes."""
    twin = ax.twinx()
    twin.plot(metrics["epoch"], metrics["test_acc"], color=SPLIT_COLORS["test"], ls=":", lw=1.5,
              label="test accuracy (right axis)")
    twin.set_ylabel("test accuracy")
    twin.yaxis.set_major_formatter(PercentFormatter(1.0))
    twin.grid(False)
    twin.spines["right"].set_visible(True)
    if legend:
        handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
        # Beside the right axis's labels whatever their size (the figure's constrained layout makes room).
        ax.figure.legend(handles=handles, loc="outside right upper", frameon=False, title=legend_title)
    return twin


# --------------------------------------------------------------------------- large activation
@styled
def plot_large_activation(table: pd.DataFrame, metrics: pd.DataFrame, quantity: str = "ratio",
                          title: str | None = None) -> Figure:
    """Top-neuron ratio (or magnitude ``value``) per layer over epochs, with test accuracy on a twin axis."""
    if quantity not in ("ratio", "value"):
        raise ValueError(f"quantity must be 'ratio' or 'value', got {quantity!r}")
    fig, ax = plt.subplots(layout="constrained", figsize=(9, 4.5))
    layers = sorted(table["layer"].unique())
    for color, layer in zip(layer_colors(len(layers)), layers):
        t = table[table["layer"] == layer].sort_values("epoch")
        ax.plot(t["epoch"], t[quantity], marker="o", ms=3, color=color, label=f"layer {layer}")
    log_y_axis(ax)
    epoch_axis(ax, float(max(table["epoch"].max(), metrics["epoch"].max())))
    reference = REFERENCE_NAMES.get(table.attrs.get("reference", "median_nonzero"), "reference")
    ax.set_ylabel(f"top neuron / {reference} (ratio)" if quantity == "ratio"
                  else "top neuron's max |activation|")
    test_accuracy_twin(ax, metrics)
    last = table[table["epoch"] == table["epoch"].max()]
    best = last.loc[last["ratio"].fillna(-np.inf).idxmax()]
    ax.set_title(title or (f"Largest activation at epoch {int(best['epoch'])}: layer {int(best['layer'])}, "
                           f"neuron {int(best['neuron'])},\n{best['ratio']:.0f}x the {reference}"))
    return fig


@styled
def plot_activation_histogram(snapshot: dict[str, np.ndarray], layer: int, title: str | None = None,
                              ratio: float | None = None) -> Figure:
    """Histogram of the layer's per-neuron max |activation| (log counts), the top neuron marked.

    ``ratio``: the top neuron's ratio as the analysis computed it (``large_activation_table``),
    quoted in the title; without it the title computes it from the snapshot."""
    absmax = np.asarray(snapshot[f"l{layer}_absmax"], dtype=float)
    live = absmax[absmax > 0]
    fig, ax = plt.subplots(layout="constrained", figsize=(7, 4))
    top = int(np.argmax(absmax))
    if len(live):
        bins = np.geomspace(live.min(), live.max() * 1.001, 40) if live.max() > live.min() else 10
        ax.hist(live, bins=bins, color=OKABE_ITO["sky blue"], edgecolor="white", log=True,
                label=f"{len(live)} active neurons")
        ax.set_xscale("log")
    ax.axvline(absmax[top], color=OKABE_ITO["vermillion"], lw=2, label=f"neuron {top}: {absmax[top]:.3g}")
    ax.set_xlabel("max |activation| over probe samples (log scale)")
    ax.set_ylabel("number of neurons (log scale)")
    dead = int((absmax == 0).sum())
    ax.legend(title=f"{dead} silent neurons not shown" if dead else None, frameon=False)
    epoch = int(snapshot["epoch"]) if "epoch" in snapshot else None
    when = f" at epoch {epoch}" if epoch is not None else ""
    if ratio is not None:
        what = REFERENCE_NAMES["median_nonzero"]
    elif f"l{layer}_median_abs_nonzero" in snapshot:
        reference, what = reference_magnitude(snapshot, layer), REFERENCE_NAMES["median_nonzero"]
        ratio = absmax[top] / reference if reference > 0 else float("nan")
    else:
        reference, what = (float(np.median(live)) if len(live) else float("nan")), "median neuron"
        ratio = absmax[top] / reference if reference > 0 else float("nan")
    ax.set_title(title or f"Layer {layer}{when}: neuron {top} reaches {absmax[top]:.3g},\n"
                          f"{ratio:.0f}x the {what}")
    return fig


@styled
def plot_correlations(corr_table: pd.DataFrame, title: str | None = None) -> Figure:
    """Pearson (bars, Fisher-z CI) and Spearman (diamonds) per quantity, inputs and outputs coloured apart."""
    t = corr_table.reset_index(drop=True)
    fig, ax = plt.subplots(layout="constrained", figsize=(8, 0.9 + 0.38 * len(t)))
    _draw_correlations(ax, t)
    ax.legend(loc="lower right", frameon=False)
    if title is None:  # the pre-activation is the neuron's own drive, not an image statistic
        image = t[(t["kind"] == "input") & (t["quantity"] != "pre-activation")]
        outputs = t[t["kind"] == "output"]
        title = (f"Large neuron: |r| up to {image['pearson'].abs().max():.2f} with image statistics, "
                 f"{outputs['pearson'].abs().max():.2f} with outputs")
        if {"layer", "neuron"} <= set(corr_table.attrs):
            title += f"\n(layer {corr_table.attrs['layer']}, neuron {corr_table.attrs['neuron']}, " \
                     f"epoch {corr_table.attrs['epoch']})"
    ax.set_title(title)
    return fig


@styled
def plot_correlation_panels(panels: "Sequence[tuple[str, pd.DataFrame]]", title: str | None = None) -> Figure:
    """``plot_correlations`` for several neurons in one figure: one panel per ``(title, corr_table)``
    on one correlation axis, one legend below the panels."""
    fig, axes = panel_rows([0.6 + 0.24 * len(t) for _, t in panels], sharex=True,
                           extra=0.9 + (0.3 if title else 0.0))
    for ax, (heading, t) in zip(axes, panels):
        _draw_correlations(ax, t.reset_index(drop=True))
        panel_title(ax, heading)
    for ax in axes[:-1]:
        ax.set_xlabel("")
    shared_legend(fig, axes, ncols=3)
    if title:
        fig.suptitle(title)
    return fig


def _draw_correlations(ax: plt.Axes, t: pd.DataFrame) -> None:
    y = np.arange(len(t))[::-1]
    colors = [KIND_COLORS.get(k, OKABE_ITO["black"]) for k in t["kind"]]
    err = np.vstack([t["pearson"] - t["pearson_low"], t["pearson_high"] - t["pearson"]])
    ax.barh(y, t["pearson"], xerr=np.nan_to_num(err), color=colors, alpha=0.85, capsize=3,
            error_kw={"lw": 1})
    ax.scatter(t["spearman"], y, marker="D", s=22, color="white", edgecolor="black", zorder=3,
               label="Spearman")
    ax.set_yticks(y, t["quantity"])
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlim(-1, 1)
    ax.set_xlabel("correlation with the neuron's activation (Pearson, 95% CI)")
    for kind, color in KIND_COLORS.items():
        ax.barh([np.nan], [np.nan], color=color, label=f"{kind} quantity (Pearson)")
    ax.grid(axis="y", visible=False)


# --------------------------------------------------------------------------- data
@styled
def plot_noise_transition(matrix: np.ndarray, title: str | None = None) -> Figure:
    """Counts, or row fractions (``noise.transition_matrix``), per (true class, trained-on label)."""
    m = np.asarray(matrix)
    n = m.shape[0]
    names = list(CLASSES[:n]) if n <= len(CLASSES) else [str(i) for i in range(n)]
    fig, ax = plt.subplots(layout="constrained", figsize=(7, 6))
    image = ax.imshow(m, cmap="Blues")
    ax.grid(False)
    ax.set_xticks(range(n), names, rotation=45, ha="right")
    ax.set_yticks(range(n), names)
    ax.set_xlabel("label trained on")
    ax.set_ylabel("true class")
    threshold = m.max() / 2 if m.size else 0
    integer = np.issubdtype(m.dtype, np.integer)
    for (i, j), v in np.ndenumerate(m):
        ax.text(j, i, f"{v}" if integer else f"{v:.2f}", ha="center", va="center", fontsize=7,
                color="white" if v > threshold else "black")
    fig.colorbar(image, ax=ax, label="training samples" if integer else "fraction of the true class")
    off_cells = m[~np.eye(n, dtype=bool)]
    fmt = "{:g}" if integer else "{:.2f}"
    ax.set_title(title or f"{off_cells.sum() / max(m.sum(), 1):.1%} of training labels changed; "
                          f"each off-diagonal cell holds {fmt.format(off_cells.min())}-{fmt.format(off_cells.max())}")
    return fig


@styled
def plot_samples(images_uint8: np.ndarray, true: Sequence[int], noisy: Sequence[int],
                 ncols: int = 8, title: str | None = None) -> Figure:
    """Grid of images titled with true class and trained-on label (changed labels in vermillion)."""
    images = np.asarray(images_uint8)
    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    width = min(MAX_WIDTH, 1.25 * ncols)
    fig, axes = plt.subplots(nrows, ncols, layout="constrained", figsize=(width, width / ncols * 1.35 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, t, y in zip(axes.flat, images, true, noisy):
        ax.imshow(img)
        changed = int(t) != int(y)
        ax.set_title(f"true: {CLASSES[int(t)]}\nlabel: {CLASSES[int(y)]}", fontsize=7,
                     color=OKABE_ITO["vermillion"] if changed else "black")
    n_changed = int(np.sum(np.asarray(true)[:n] != np.asarray(noisy)[:n]))
    fig.suptitle(title or f"{n_changed} of {n} shown training labels were changed (in vermillion)")
    return fig


# --------------------------------------------------------------------------- verdicts with their noise
@styled
def plot_intervals(table: pd.DataFrame, value: str, low: str, high: str, xlabel: str, title: str,
                   scale: float = 1.0, null: float = 0.0, null_label: str = "no change") -> Figure:
    """One row per model and seed: an estimate with its 95% interval, the null value as a line.

    Filled markers where the interval excludes the null, open ones where it does not;
    rows without an estimate (not testable) are listed as such.
    """
    rows = table.reset_index(drop=True)
    fig, ax = plt.subplots(layout="constrained", figsize=(8, 0.9 + 0.32 * len(rows)))
    labels = []
    for i, r in rows.iterrows():
        y = len(rows) - 1 - i
        name = f"{str(r['model']).upper()} seed {int(r['seed'])}"
        if not np.isfinite(r[value]):
            labels.append((y, f"{name} (not testable)"))
            continue
        color = MODEL_COLORS.get(str(r["model"]), OKABE_ITO["black"])
        lo, hi = r[low] * scale, r[high] * scale
        significant = np.isfinite(lo) and np.isfinite(hi) and (lo > null or hi < null)
        if np.isfinite(lo) and np.isfinite(hi):
            ax.plot([lo, hi], [y, y], color=color, lw=2)
        ax.plot(r[value] * scale, y, "o", ms=7, color=color, mfc=color if significant else "white")
        labels.append((y, name))
    ax.axvline(null, color=OKABE_ITO["black"], lw=1, ls="--", label=null_label)
    ax.set_yticks([y for y, _ in labels], [t for _, t in labels])
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlabel(xlabel)
    ax.grid(axis="y", visible=False)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
              title="filled: 95% interval\nexcludes the line")
    ax.set_title(title)
    return fig


@styled
def plot_sensitivity_grid(cells: pd.DataFrame, effect: float, title: str, scale: float = 100.0) -> Figure:
    """One row per variant of the post-fit sensitivity grid (``claims.grid_over_seeds`` or one run's
    ``sensitivity_grid``): the change with its 95% interval, lines at zero and at the smallest
    effect of interest; variants that are not testable are listed as such."""
    rows = cells.sort_values(["level", "window", "end_fraction"]).reset_index(drop=True)
    fig, ax = plt.subplots(layout="constrained", figsize=(8, 0.9 + 0.28 * len(rows)))
    labels = []
    for i, r in rows.iterrows():
        y = len(rows) - 1 - i
        name = f"fit {r['level']:.0%}, window {int(r['window'])}, last {r['end_fraction']:.0%}"
        if not np.isfinite(r["change"]):
            labels.append((y, f"{name} (not testable)"))
            continue
        lo, hi = r["low"] * scale, r["high"] * scale
        ax.plot([lo, hi], [y, y], color=OKABE_ITO["blue"], lw=2)
        ax.plot(r["change"] * scale, y, "o", ms=6, color=OKABE_ITO["blue"])
        labels.append((y, name))
    ax.axvline(0.0, color=OKABE_ITO["black"], lw=1, ls="--", label="no change")
    ax.axvline(effect * scale, color=OKABE_ITO["vermillion"], lw=1.5, ls=":", label="smallest rise of interest")
    ax.set_yticks([y for y, _ in labels], [t for _, t in labels])
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlabel("test accuracy, end window minus fit window (points)")
    ax.grid(axis="y", visible=False)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_title(title)
    return fig


#: The y-axis label of each separation index column ``plot_separation_index`` can show.
INDEX_LABELS: dict[str, str] = {
    "index": "separation index\n(0 = split-half baseline, 1 = another class)",
    "net_index": "net separation index\n(noisy minus unseen images; 0 = no difference)",
    "unseen_index": "separation index of unseen images\n(0 = split-half baseline)",
}


@styled
def plot_separation_index(index: pd.DataFrame, title: str, column: str = "index") -> Figure:
    """Per model, a separation index (``column``) by layer at the first and last snapshot, mean and
    min-max over seeds.

    ``index`` is ``tables.index_rows``; the dashed zero line is the split-half baseline (two
    clean samples of the same size), which the index subtracts, or, for the net index, no
    difference between noisy and unseen images.
    """
    models = list(dict.fromkeys(index["model"]))
    fig, axes = plt.subplots(1, len(models), layout="constrained", figsize=(min(MAX_WIDTH, 3.2 * len(models) + 1), 4.4),
                             sharey=True, squeeze=False)
    fig.get_layout_engine().set(wspace=0.05)  # the last layer of one panel apart from the first of the next
    for ax, model in zip(axes[0], models):
        rows = index[index["model"] == model]
        first, last = rows["epoch"].min(), rows.groupby("seed")["epoch"].max().min()
        for epoch, color, label in ((first, OKABE_ITO["black"], f"epoch {first} (initialisation)"),
                                    (last, MODEL_COLORS.get(model, OKABE_ITO["blue"]),
                                     f"{model.upper()}: epoch {last} (last snapshot)")):
            stats = rows[rows["epoch"] == epoch].groupby("layer")[column].agg(["mean", "min", "max"])
            ax.plot(stats.index, stats["mean"], marker="o", ms=4, color=color, label=label)
            if rows["seed"].nunique() > 1:
                ax.fill_between(stats.index, stats["min"], stats["max"], color=color, alpha=0.2, lw=0)
        ax.axhline(0.0, color=OKABE_ITO["black"], lw=1, ls="--")
        ax.set_xticks(sorted(rows["layer"].unique()))
        ax.set_xlabel("hidden layer")
        n = rows["seed"].nunique()
        ax.set_title(f"{model.upper()} ({n} seed{'s' if n > 1 else ''})")
    axes[0][0].set_ylabel(INDEX_LABELS.get(column, column))
    # One legend below the panels: inside them it would cover the curves.
    bands = index.groupby("model")["seed"].nunique().max() > 1
    shared_legend(fig, axes[0], title="band: min to max over seeds" if bands else None)
    fig.suptitle(title)
    return fig


@styled
def plot_ratio_over_training(per_image: pd.DataFrame, metrics: pd.DataFrame, title: str) -> Figure:
    """Per layer: the median per-image ratio over epochs (band: quartiles over images), test accuracy on a twin axis."""
    fig, ax = plt.subplots(layout="constrained", figsize=(9, 4.5))
    _draw_ratio_over_training(ax, per_image, metrics, len(per_image["layer"].unique()))
    ax.set_ylabel("per-image ratio: top |activation| /\nmedian non-zero |activation| (median over images)")
    test_accuracy_twin(ax, metrics, legend_title="band: quartiles over images")
    ax.set_title(title)
    return fig


@styled
def plot_ratio_over_training_panels(panels: "Sequence[tuple[str, pd.DataFrame, pd.DataFrame]]",
                                    title: str | None = None) -> Figure:
    """``plot_ratio_over_training`` for several runs in one figure: one panel per ``(title, per_image,
    metrics)``, each layer in the same colour in every panel, one legend below the panels."""
    n_layers = max(len(per_image["layer"].unique()) for _, per_image, _ in panels)
    fig, axes = panel_rows([2.5] * len(panels), extra=1.2 + (0.3 if title else 0.0))
    twins = []
    for ax, (heading, per_image, metrics) in zip(axes, panels):
        _draw_ratio_over_training(ax, per_image, metrics, n_layers)
        twins.append(test_accuracy_twin(ax, metrics, legend=False))
        panel_title(ax, heading)
    for ax in axes[:-1]:
        ax.set_xlabel("")
    fig.supylabel("per-image ratio: top / median non-zero |activation|\n(median over images; log scale)",
                  fontsize=MIN_FONT_PT + 1)
    shared_legend(fig, [*axes, *twins], ncols=4, title="band: quartiles over images")
    if title:
        fig.suptitle(title)
    return fig


def _draw_ratio_over_training(ax: plt.Axes, per_image: pd.DataFrame, metrics: pd.DataFrame, n_layers: int) -> None:
    """Layer ``k`` in the ``k``-th of ``n_layers`` colours, so that several panels share them."""
    colors = layer_colors(n_layers)
    for layer in sorted(per_image["layer"].unique()):
        color = colors[min(int(layer), n_layers) - 1] if int(layer) >= 1 else colors[0]
        t = per_image[per_image["layer"] == layer].sort_values("epoch")
        ax.plot(t["epoch"], t["ratio"], marker="o", ms=3, color=color, label=f"layer {layer}")
        ax.fill_between(t["epoch"], t["ratio_q25"], t["ratio_q75"], color=color, alpha=0.15, lw=0)
    log_y_axis(ax)
    epoch_axis(ax, float(max(per_image["epoch"].max(), metrics["epoch"].max())))


@styled
def plot_ratio_distribution(ratios: dict[str, np.ndarray], title: str) -> Figure:
    """Histograms (log x) of per-image ratios, one per label (e.g. at initialisation and at the last epoch)."""
    fig, ax = plt.subplots(layout="constrained", figsize=(8, 4))
    _draw_ratio_distribution(ax, ratios)
    ax.legend(frameon=False)
    ax.set_title(title)
    return fig


@styled
def plot_ratio_distribution_panels(panels: "Sequence[tuple[str, dict[str, np.ndarray]]]",
                                   title: str | None = None) -> Figure:
    """``plot_ratio_distribution`` for several runs in one figure: one panel per ``(title, ratios)``,
    the medians in each panel's title, one legend (the keys of ``ratios``) below the panels."""
    fig, axes = panel_rows([2.3] * len(panels), extra=0.9 + (0.3 if title else 0.0))
    for ax, (heading, ratios) in zip(axes, panels):
        medians = _draw_ratio_distribution(ax, ratios, medians_in_labels=False)
        panel_title(ax, f"{heading}; medians {' and '.join(f'{m:.1f}x' for m in medians)}")
        ax.set_ylabel("probe images")
    for ax in axes[:-1]:
        ax.set_xlabel("")
    axes[-1].set_xlabel("per-image ratio: top |activation| / median non-zero |activation| (log scale)")
    shared_legend(fig, axes)
    if title:
        fig.suptitle(title)
    return fig


def _draw_ratio_distribution(ax: plt.Axes, ratios: dict[str, np.ndarray], medians_in_labels: bool = True) -> list[float]:
    """Step histograms of ``ratios`` on a log x axis; returns their medians (nan where empty)."""
    finite = [np.asarray(v, dtype=float)[np.isfinite(v) & (np.asarray(v) > 0)] for v in ratios.values()]
    everything = np.concatenate([v for v in finite if len(v)]) if any(len(v) for v in finite) else np.array([1.0])
    bins = np.geomspace(everything.min(), everything.max() * 1.001, 40) if everything.max() > everything.min() else 10
    colors = [OKABE_ITO["black"], OKABE_ITO["vermillion"], OKABE_ITO["blue"], OKABE_ITO["bluish green"]]
    medians = [float(np.median(values)) if len(values) else float("nan") for values in finite]
    for (label, _), values, median, color in zip(ratios.items(), finite, medians, colors):
        ax.hist(values, bins=bins, histtype="step", lw=2, color=color,
                label=f"{label}: median {median:.1f}x" if len(values) and medians_in_labels else label)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}"[0] in "235" else ""))
    ax.set_xlabel("per-image ratio: top |activation| / median non-zero |activation| (log scale)")
    ax.set_ylabel("number of probe images")
    return medians


@styled
def plot_class_index(table: pd.DataFrame, epoch: "int | Sequence[int]", title: str | None = None) -> Figure:
    """The separation index of every layer and class at one snapshot epoch (an ``index_table``),
    on a colour scale centred on the split-half baseline 0.

    Several epochs give one panel each, on one colour scale; ``title`` then heads the figure and
    each panel is titled with its epoch.
    """
    epochs = [int(epoch)] if np.ndim(epoch) == 0 else [int(e) for e in epoch]
    grids = [table[table["epoch"] == e].pivot(index="layer", columns="class", values="index") for e in epochs]
    bound = float(np.nanmax(np.abs(table["index"].to_numpy()))) or 1.0
    if len(epochs) == 1:
        fig, ax = plt.subplots(layout="constrained", figsize=(8, 1.4 + 0.4 * len(grids[0])))
        axes = [ax]
    else:
        fig, axes = panel_rows([0.8 + 0.3 * len(g) for g in grids], sharex=True, extra=1.7)
    image = None
    for ax, e, grid in zip(axes, epochs, grids):
        image = ax.imshow(grid.to_numpy(), cmap="RdBu_r", aspect="auto", vmin=-bound, vmax=bound)
        ax.set_xticks(range(grid.shape[1]), [CLASSES[c] for c in grid.columns], rotation=30, ha="right")
        ax.set_yticks(range(len(grid)), [f"layer {layer}" for layer in grid.index])
        ax.grid(False)
        finding = f"separation index per layer and class (mean {np.nanmean(grid.to_numpy()):+.2f})"
        if len(epochs) == 1:
            ax.set_title(title or f"Epoch {e}: {finding}")
        else:
            panel_title(ax, f"Epoch {e}: {finding}")
    if len(epochs) == 1:
        fig.colorbar(image, ax=axes, label="separation index")
    else:  # below the panels, so that each panel's title has the figure's width
        fig.colorbar(image, ax=axes, label="separation index", location="bottom", fraction=0.05, aspect=40,
                     shrink=0.8)
    if len(epochs) > 1 and title:
        fig.suptitle(title)
    return fig


@styled
def plot_ablation(table: pd.DataFrame, title: str | None = None) -> Figure:
    """Change of test accuracy when each neuron of an ``ablation_table`` is silenced, with paired 95% intervals:
    the large-activation neuron first (vermillion), then the random neurons of the same layer (grey)."""
    rows = table[table["label"] != "baseline"].reset_index(drop=True)
    fig, ax = plt.subplots(layout="constrained", figsize=(8, 3.8))
    _draw_ablation(ax, rows)
    layer, mode = int(rows["layer"].iloc[0]), str(rows["mode"].iloc[0])
    ax.set_title(title or f"Layer {layer}, {mode}-ablation: test accuracy change with 95% paired intervals")
    return fig


@styled
def plot_ablation_panels(panels: "Sequence[tuple[str, pd.DataFrame]]", title: str | None = None) -> Figure:
    """``plot_ablation`` for several runs in one figure: one panel per ``(title, ablation_table)``, each
    title followed by the layer and mode, one axis label for all panels."""
    fig, axes = panel_rows([2.4] * len(panels), extra=0.4 + (0.3 if title else 0.0))
    for ax, (heading, table) in zip(axes, panels):
        rows = table[table["label"] != "baseline"].reset_index(drop=True)
        _draw_ablation(ax, rows)
        ax.set_ylabel("")
        ax.set_xlabel("silenced neuron" if ax is not axes[-1] else ax.get_xlabel())
        panel_title(ax, f"{heading}, layer {int(rows['layer'].iloc[0])}, {rows['mode'].iloc[0]}-ablation")
    fig.supylabel("change of test accuracy (points, 95% paired interval)", fontsize=MIN_FONT_PT + 1)
    if title:
        fig.suptitle(title)
    return fig


def _draw_ablation(ax: plt.Axes, rows: pd.DataFrame) -> None:
    x = np.arange(len(rows))
    colors = [OKABE_ITO["vermillion"] if label == "large neuron" else "#999999" for label in rows["label"]]
    ax.bar(x, 100 * rows["d_test_acc"], color=colors)
    if "d_test_acc_low" in rows:
        ax.errorbar(x, 100 * rows["d_test_acc"], yerr=[100 * (rows["d_test_acc"] - rows["d_test_acc_low"]),
                                                         100 * (rows["d_test_acc_high"] - rows["d_test_acc"])],
                    fmt="none", ecolor=OKABE_ITO["black"], elinewidth=1, capsize=2)
    ax.axhline(0, color=OKABE_ITO["black"], lw=0.8)
    ax.set_xticks(x, [f"{int(n)}" for n in rows["neuron"]], rotation=90, fontsize=7)
    ax.set_xlabel("silenced neuron (first: the large-activation neuron; the rest: random neurons)")
    ax.set_ylabel("change of test accuracy (points)")
    ax.grid(axis="x", visible=False)


@styled
def plot_training_loss(runs: "Sequence[RunData]") -> Figure:
    """Mean mini-batch training loss per epoch, one line per run."""
    fig, ax = plt.subplots(layout="constrained", figsize=(8, 4))
    for color, run in zip(layer_colors(len(runs)), runs):
        m = run.metrics
        ax.plot(m["epoch"], m["train_loss"], "o-", ms=3, color=color, label=run.name)
    ax.set(xlabel="epoch", ylabel="mean mini-batch cross-entropy (nats)")
    ax.legend(frameon=False)
    final = ", ".join(f"{r.model.upper()} {r.metrics['train_loss'].iloc[-1]:.2f}" for r in runs)
    ax.set_title(f"Training loss falls for every model; last epoch: {final}")
    return fig
