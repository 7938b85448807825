"""Figures of several models in one figure (one panel each, one caption in the book), and the
figures whose text used to collide: every legend lies outside every axes, no two tick labels
overlap, no text is smaller than the minimum and the figure fits the column."""

from itertools import combinations
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.legend import Legend  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from ddd_support.analysis.phases import detect_phases  # noqa: E402
from ddd_support.book.reference import REFERENCE_ROOT  # noqa: E402
from ddd_support.figures import runs as fg  # noqa: E402
from ddd_support.figures.sweeps import plot_error_heatmaps  # noqa: E402
from ddd_support.sweeps.results import read_sweep  # noqa: E402

from .test_figures import layer_table, metrics  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def drawn(fig):
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def legends(fig) -> list[Legend]:
    return [a for a in fig.findobj(Legend) if a.get_visible()]


def assert_legends_outside_every_axes(fig) -> None:
    renderer = drawn(fig)
    found = legends(fig)
    assert found, "no legend"
    for legend in found:
        box = legend.get_window_extent(renderer)
        for ax in fig.axes:
            area = ax.get_window_extent(renderer)
            inner = area.padded(-1)  # touching an edge is not covering data
            assert not box.overlaps(inner), f"legend {[t.get_text() for t in legend.get_texts()]} over {ax}"


def overlap(a: Text, b: Text, renderer) -> bool:
    """Whether two labels cover each other. Two labels rotated alike (class names at 30 degrees)
    have overlapping boxes without touching: they are apart when their baselines are at least a
    line's height apart."""
    if a.get_rotation() == b.get_rotation() and a.get_rotation() % 90:
        theta = np.radians(a.get_rotation())
        (xa, ya), (xb, yb) = (t.get_transform().transform(t.get_position()) for t in (a, b))
        height = max(a.get_fontsize(), b.get_fontsize()) / 72 * a.figure.dpi
        return abs((xb - xa) * np.sin(theta) - (yb - ya) * np.cos(theta)) < height
    return extent(a, renderer).overlaps(extent(b, renderer))


def extent(text: Text, renderer):
    """The box of ``text`` as drawn: a wrapped text is measured as its wrapped lines."""
    if not text.get_wrap():
        return text.get_window_extent(renderer).padded(-0.5)
    original = text.get_text()
    text.set_text(text._get_wrapped_text())
    try:
        return text.get_window_extent(renderer).padded(-0.5)
    finally:
        text.set_text(original)


def shown_tick_labels(axis) -> list[Text]:
    """The tick labels drawn: those of ticks within the axis's view (matplotlib keeps the others)."""
    low, high = sorted(axis.get_view_interval())
    pad = (high - low) * 1e-9
    ticks = [*zip(axis.get_majorticklocs(), axis.get_majorticklabels()),
             *zip(axis.get_minorticklocs(), axis.get_minorticklabels())]
    return [label for loc, label in ticks if low - pad <= loc <= high + pad]


def assert_no_labels_overlap(fig) -> None:
    """No two of the figure's tick labels, axis labels and titles cover each other."""
    renderer = drawn(fig)
    labels = [t for ax in fig.axes for axis in (ax.xaxis, ax.yaxis) for t in shown_tick_labels(axis)]
    labels += [t for ax in fig.axes for t in (ax.xaxis.label, ax.yaxis.label, ax.title, ax._left_title)]
    labels += [t for t in (fig._suptitle, fig._supxlabel, fig._supylabel) if t is not None]
    labels = [t for t in labels if t.get_visible() and t.get_text() and (t.axes is None or t.axes.get_visible())]
    clashes = [(a.get_text(), b.get_text()) for a, b in combinations(labels, 2) if overlap(a, b, renderer)]
    assert clashes == []


def assert_fits_with_readable_text(fig) -> None:
    drawn(fig)
    assert fig.get_size_inches()[0] <= fg.MAX_WIDTH
    sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_text() and t.get_visible()]
    assert min(sizes) >= fg.MIN_FONT_PT


def panel_axes(fig) -> list:
    """The panels: axes with a title (twin axes and colour bars have none)."""
    return [ax for ax in fig.axes if ax.get_title(loc="left") or ax.get_title()]


def model_runs(model: str, shift: float):
    return [SimpleNamespace(model=model, seed=s, metrics=metrics(shift + 0.05 * s)) for s in (0, 1)]


def test_four_way_panels_give_each_model_a_titled_panel_and_share_one_legend_below():
    groups = {"mlp3": model_runs("mlp3", 0.0), "mlp7": model_runs("mlp7", 0.02)}
    phases = {m: detect_phases(metrics(0.0)) for m in groups}
    fig = fg.plot_four_way_panels(groups, phases=phases, metric="acc")
    panels = panel_axes(fig)
    assert [ax.get_title(loc="left").split(",")[0] for ax in panels] == ["MLP3", "MLP7"]
    assert "peaks at epoch" in panels[0].get_title(loc="left")
    assert len(legends(fig)) == 1
    texts = [t.get_text() for t in legends(fig)[0].get_texts()]
    assert texts.count("test") == 1 and "test dip" in texts  # once for all panels, without an epoch
    assert_legends_outside_every_axes(fig)
    assert_fits_with_readable_text(fig)


def test_four_way_panels_reject_an_unknown_metric():
    with pytest.raises(ValueError, match="metric must be"):
        fg.plot_four_way_panels({"mlp3": model_runs("mlp3", 0.0)}, metric="f1")


def test_separation_heatmaps_share_one_colour_scale_and_name_each_model():
    tables = {"mlp3": layer_table(), "mlp5": layer_table().assign(cosine=lambda t: t["cosine"] - 0.1)}
    fig = fg.plot_separation_heatmaps(tables, titles={"mlp3": "MLP3, seed 0", "mlp5": "MLP5, seed 0"})
    panels = panel_axes(fig)
    assert [ax.get_title(loc="left").split(":")[0] for ax in panels] == ["MLP3, seed 0, epoch 60",
                                                                       "MLP5, seed 0, epoch 60"]
    limits = {ax.images[0].get_clim() for ax in panels}
    assert len(limits) == 1 and limits.pop()[0] == pytest.approx(tables["mlp5"]["cosine"].min())
    assert_no_labels_overlap(fig)
    assert_fits_with_readable_text(fig)


def test_separation_heatmap_epoch_labels_do_not_overlap_with_many_snapshots():
    epochs = [0, 1, 2, 3, 5, 8, 10, 15, 20, 30, 50, 80, 100, 150, 200, 300, 500, 800, 1000, 1500, 2000]
    table = pd.DataFrame([(e, layer, 0.9) for e in epochs for layer in (1, 2)], columns=["epoch", "layer", "cosine"])
    assert_no_labels_overlap(fg.plot_separation_heatmaps({"mlp3": table, "mlp5": table}))
    assert_no_labels_overlap(fg.plot_separation_heatmap(table))


def test_separation_index_has_one_legend_outside_its_three_panels():
    rows = [(m, s, e, layer, 0.1 * layer * (e > 0)) for m in ("mlp3", "mlp5", "mlp7") for s in (0, 1)
            for e in (0, 120) for layer in range(1, {"mlp3": 3, "mlp5": 5, "mlp7": 7}[m])]
    index = pd.DataFrame(rows, columns=["model", "seed", "epoch", "layer", "net_index"])
    fig = fg.plot_separation_index(index, "Net separation index by layer", column="net_index")
    assert [ax.get_legend() for ax in fig.axes] == [None] * 3
    assert len(legends(fig)) == 1
    texts = [t.get_text() for t in legends(fig)[0].get_texts()]
    assert texts == ["epoch 0 (initialisation)", "MLP3: epoch 120 (last snapshot)",
                     "MLP5: epoch 120 (last snapshot)", "MLP7: epoch 120 (last snapshot)"]
    assert_legends_outside_every_axes(fig)
    assert_no_labels_overlap(fig)
    assert_fits_with_readable_text(fig)


def test_class_index_at_two_epochs_is_one_figure_of_two_panels_on_one_scale():
    rows = [(e, layer, c, 0.01 * (layer + c) * (e > 0)) for e in (0, 60) for layer in (1, 2, 3) for c in range(10)]
    table = pd.DataFrame(rows, columns=["epoch", "layer", "class", "index"])
    fig = fg.plot_class_index(table, [0, 60], title="MLP7, seed 0: first and last snapshot")
    panels = panel_axes(fig)
    assert [ax.get_title(loc="left").split(":")[0] for ax in panels] == ["Epoch 0", "Epoch 60"]
    assert len({ax.images[0].get_clim() for ax in panels}) == 1
    assert fig.get_suptitle() == "MLP7, seed 0: first and last snapshot"
    assert_no_labels_overlap(fig)
    assert_fits_with_readable_text(fig)
    assert len(panel_axes(fg.plot_class_index(table, 60))) == 1  # one epoch: the figure as before


def ablation(neuron: int) -> pd.DataFrame:
    n = 21
    return pd.DataFrame({"label": ["baseline", "large neuron"] + [f"random neuron {i}" for i in range(1, n)],
                         "layer": 1, "neuron": [-1, neuron, *range(100, 100 + n - 1)], "mode": "mean",
                         "d_test_acc": [0.0, *np.linspace(-0.01, 0.01, n)],
                         "d_test_acc_low": [0.0, *np.linspace(-0.02, 0.0, n)],
                         "d_test_acc_high": [0.0, *np.linspace(0.0, 0.02, n)]})


def test_ablation_panels_title_each_run_with_its_layer():
    fig = fg.plot_ablation_panels([("MLP3 seed 0", ablation(7)), ("MLP7 seed 0", ablation(9))])
    panels = panel_axes(fig)
    assert [ax.get_title(loc="left") for ax in panels] == ["MLP3 seed 0, layer 1, mean-ablation",
                                                           "MLP7 seed 0, layer 1, mean-ablation"]
    assert [t.get_text() for t in panels[1].get_xticklabels()][0] == "9"
    assert_no_labels_overlap(fig)
    assert_fits_with_readable_text(fig)


def per_image(layers: int) -> pd.DataFrame:
    return pd.DataFrame([(e, layer, 3.0 + e * layer / 10, 2.5, 3.5 + e) for e in (0, 1, 10, 60)
                         for layer in range(1, layers + 1)],
                        columns=["epoch", "layer", "ratio", "ratio_q25", "ratio_q75"])


def test_ratio_over_training_panels_colour_a_layer_alike_in_every_panel():
    fig = fg.plot_ratio_over_training_panels([("MLP3 seed 0", per_image(2), metrics()),
                                             ("MLP7 seed 0", per_image(6), metrics())])
    panels = panel_axes(fig)
    assert len(panels) == 2
    first = {line.get_label(): line.get_color() for line in panels[0].get_lines()}
    second = {line.get_label(): line.get_color() for line in panels[1].get_lines()}
    assert first["layer 2"] == second["layer 2"]
    texts = [t.get_text() for t in legends(fig)[0].get_texts()]
    assert texts[:6] == [f"layer {k}" for k in range(1, 7)] and "test accuracy (right axis)" in texts
    assert_legends_outside_every_axes(fig)
    assert_fits_with_readable_text(fig)


def test_ratio_distribution_panels_put_the_medians_in_each_title():
    ratios = {"initialisation": np.array([2.0, 3.0, 4.0]), "last snapshot": np.array([20.0, 30.0])}
    fig = fg.plot_ratio_distribution_panels([("MLP3 seed 0, layer 1", ratios), ("MLP7 seed 0, layer 2", ratios)])
    assert panel_axes(fig)[1].get_title(loc="left") == "MLP7 seed 0, layer 2; medians 3.0x and 25.0x"
    assert [t.get_text() for t in legends(fig)[0].get_texts()] == ["initialisation", "last snapshot"]
    assert_legends_outside_every_axes(fig)
    assert_fits_with_readable_text(fig)


def test_correlation_panels_share_one_legend():
    quantities = ["brightness", "contrast", "logit margin"]
    corr = pd.DataFrame({"quantity": quantities, "kind": ["input", "input", "output"],
                         "pearson": [0.5, 0.1, -0.2], "pearson_low": [0.4, 0.0, -0.3],
                         "pearson_high": [0.6, 0.2, -0.1], "spearman": [0.45, 0.12, -0.15]})
    fig = fg.plot_correlation_panels([("MLP3 seed 0", corr), ("MLP7 seed 0", corr)])
    assert len(panel_axes(fig)) == 2
    assert [t.get_text() for t in legends(fig)[0].get_texts()] == [
        "Spearman", "input quantity (Pearson)", "output quantity (Pearson)"]
    assert_legends_outside_every_axes(fig)
    assert_no_labels_overlap(fig)
    assert_fits_with_readable_text(fig)


def test_sweep_heatmaps_show_no_overlapping_tick_labels():
    _, table, epochs, _ = read_sweep(REFERENCE_ROOT / "sweeps" / "noise-width")
    fig = plot_error_heatmaps(epochs, table, "Test error over noise rate, width and epoch")
    assert len(fig.axes) == table["widths"].nunique() + 1 + (table["widths"].nunique() % 2)  # panels, bar, spare
    assert_no_labels_overlap(fig)
    renderer = drawn(fig)
    epoch_labels = [fig._supxlabel.get_window_extent(renderer)]
    assert epoch_labels and fig._supxlabel.get_text() == "epoch (log scale)"
    assert_fits_with_readable_text(fig)


@pytest.mark.parametrize("claim", ["large_exists", "post_fit_rise"])
def test_the_scale_map_figures_show_no_overlapping_labels_and_their_legend_below(claim):
    from ddd_support.figures.sweeps import plot_finding_map
    from ddd_support.sweeps.results import read_detail_tables
    from ddd_support.sweeps.scale_map import (activation_by_length, activation_runs, cells_of, finding_cells,
                                              finding_runs, run_axes)

    folder = REFERENCE_ROOT / "sweeps" / "scale-map"
    spec = read_sweep(folder)[0]
    claims, activation = read_detail_tables(folder)
    axes = run_axes(spec)
    if claim == "large_exists":   # as chapter 08 draws them
        runs = activation_runs(activation_by_length(activation, axes), "growth")
        cells = cells_of(runs, "point", "model")
    else:
        runs, cells = finding_runs(claims, axes, claim), finding_cells(claims, axes, claim)
    fig = plot_finding_map(runs, cells, "A finding over the map", "statistic", threshold=0.0)
    assert len([ax for ax in fig.axes if ax.get_xlabel()]) >= 4
    assert_legends_outside_every_axes(fig)
    assert_no_labels_overlap(fig)
    assert_fits_with_readable_text(fig)
