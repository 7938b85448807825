"""Figure functions: each returns a labelled Figure in the shared style, from constructed tables."""

from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ddd_support.figures import runs as fg
from ddd_support.analysis.phases import detect_phases  # noqa: E402
from ddd_support.data.cifar import CLASSES  # noqa: E402

EPOCHS = np.arange(0, 61)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def metrics(shift: float = 0.0) -> pd.DataFrame:
    e = EPOCHS
    test = np.interp(e, [0, 5, 20, 60], [0.1, 0.6, 0.45, 0.58]) + shift
    return pd.DataFrame({
        "epoch": e, "clean_acc": np.minimum(1, 0.1 + e / 10) - shift, "noisy_acc": np.clip((e - 10) / 20, 0.05, 1),
        "noisy_true_acc": np.interp(e, [0, 8, 30], [0.1, 0.5, 0.0]), "test_acc": test,
        **{f"{s}_loss": 2.3 - e / 60 + shift for s in ("clean", "noisy", "noisy_true", "test")},
    })


def run(seed: int, shift: float) -> SimpleNamespace:
    return SimpleNamespace(model="mlp7", seed=seed, metrics=metrics(shift))


def layer_table() -> pd.DataFrame:
    epochs, layers = [0, 1, 5, 20, 60], [1, 2, 3]
    return pd.DataFrame([(e, l, 1 - 0.002 * e * l) for e in epochs for l in layers],
                        columns=["epoch", "layer", "cosine"])


def test_split_mapping_names_the_four_splits_once():
    assert fg.SPLIT_LABELS == {"clean": "clean train", "noisy": "noisy train (noisy labels)",
                               "noisy_true": "noisy train (true labels)", "test": "test"}
    assert set(fg.SPLIT_COLORS) == set(fg.SPLIT_LABELS)
    assert len(set(fg.SPLIT_COLORS.values())) == 4


def test_split_colours_come_from_the_okabe_ito_palette():
    assert set(fg.SPLIT_COLORS.values()) <= set(fg.OKABE_ITO.values())


def test_four_way_draws_each_split_with_its_label_and_colour():
    ax = fg.plot_four_way(metrics()).axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    for split, label in fg.SPLIT_LABELS.items():
        assert to_rgba(lines[label].get_color()) == to_rgba(fg.SPLIT_COLORS[split])


def test_four_way_uses_a_log_epoch_axis_and_labels_units():
    fig = fg.plot_four_way(metrics(), metric="loss")
    ax = fig.axes[0]
    assert ax.get_xscale() == "symlog"
    assert "epoch" in ax.get_xlabel() and "nats" in ax.get_ylabel()
    assert fig.get_size_inches()[0] <= fg.MAX_WIDTH


def test_four_way_over_seeds_draws_the_mean_and_a_band():
    ax = fg.plot_four_way([run(0, 0.0), run(1, 0.1)]).axes[0]
    test_line = next(line for line in ax.get_lines() if line.get_label() == "test")
    np.testing.assert_allclose(test_line.get_ydata(), metrics(0.05)["test_acc"])
    assert sum(isinstance(c, PolyCollection) for c in ax.collections) == 4
    assert "2 seeds" in ax.get_title()


def test_four_way_with_phases_shades_noisy_fitting_and_states_the_finding():
    m = metrics()
    phases = detect_phases(m)
    ax = fg.plot_four_way(m, phases=phases).axes[0]
    labels = [a.get_label() for a in ax.patches + ax.get_lines()]
    assert "fitting the noisy labels" in labels
    assert f"test dip (epoch {phases.test_dip_epoch})" in labels
    assert f"peaks at epoch {phases.test_peak_epoch}" in ax.get_title()


def test_four_way_rejects_unknown_metric():
    with pytest.raises(ValueError, match="metric must be"):
        fg.plot_four_way(metrics(), metric="f1")


def test_separation_heatmap_is_layers_by_epochs():
    fig = fg.plot_separation_heatmap(layer_table())
    image = fig.axes[0].get_images()[0]
    assert image.get_array().shape == (3, 5)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["0", "1", "5", "20", "60"]
    assert "layer 3" in fig.axes[0].get_title()


def test_separation_curves_draw_one_line_per_layer():
    ax = fg.plot_separation_curves(layer_table()).axes[0]
    assert [line.get_label() for line in ax.get_lines()] == ["layer 1", "layer 2", "layer 3"]
    assert "cosine" in ax.get_ylabel()


def test_large_activation_plots_ratio_per_layer_against_test_accuracy():
    table = pd.DataFrame({"epoch": [0, 10, 0, 10], "layer": [1, 1, 2, 2], "neuron": [4, 4, 1, 1],
                          "value": [1, 400, 1, 2], "median": 1.0, "ratio": [1, 400, 1, 2]})
    fig = fg.plot_large_activation(table, metrics())
    ax, twin = fig.axes
    assert ax.get_yscale() == "log"
    assert "test accuracy" in twin.get_ylabel()
    assert "layer 1, neuron 4" in ax.get_title() and "400x" in ax.get_title()


def test_activation_histogram_marks_the_outlier_neuron():
    absmax = np.r_[np.linspace(0.5, 2.0, 50), 0.0, 300.0]
    ax = fg.plot_activation_histogram({"l1_absmax": absmax, "epoch": np.int64(7)}, layer=1).axes[0]
    marker = next(line for line in ax.get_lines() if line.get_label().startswith("neuron 51"))
    assert marker.get_xdata()[0] == 300.0
    assert ax.get_yscale() == "log"
    assert "epoch 7" in ax.get_title() and "reaches 300" in ax.get_title()
    assert "1 silent" in ax.get_legend().get_title().get_text()


def test_activation_histogram_ratio_uses_the_snapshot_reference():
    snap = {"l2_absmax": np.array([1.0, 2.0, 50.0]), "l2_median_abs_nonzero": np.float32(0.5)}
    assert "100x the median non-zero activation" in fg.plot_activation_histogram(snap, 2).axes[0].get_title()


def test_correlation_bars_colour_inputs_and_outputs_apart():
    table = pd.DataFrame({"quantity": ["brightness", "logit margin"], "kind": ["input", "output"],
                          "pearson": [0.9, 0.05], "pearson_low": [0.85, -0.1], "pearson_high": [0.93, 0.2],
                          "spearman": [0.88, 0.02], "n": 100})
    ax = fg.plot_correlations(table).axes[0]
    bars = [p for p in ax.patches if np.isfinite(p.get_width())]
    assert [to_rgba(b.get_facecolor(), 1) for b in bars] == [to_rgba(fg.KIND_COLORS["input"]),
                                                            to_rgba(fg.KIND_COLORS["output"])]
    assert "0.90 with image statistics" in ax.get_title() and "0.05 with outputs" in ax.get_title()


def test_correlation_title_does_not_count_the_neuron_s_own_pre_activation():
    table = pd.DataFrame({"quantity": ["brightness", "pre-activation", "logit margin"],
                          "kind": ["input", "input", "output"], "pearson": [0.3, 0.99, 0.1],
                          "pearson_low": 0.0, "pearson_high": 1.0, "spearman": 0.0, "n": 100})
    assert "0.30 with image statistics" in fg.plot_correlations(table).axes[0].get_title()


def test_noise_transition_labels_axes_with_class_names():
    matrix = np.full((10, 10), 3) + np.diag(np.full(10, 70))
    ax = fg.plot_noise_transition(matrix).axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == list(CLASSES)
    assert "27.0% of training labels changed" in ax.get_title() and "3-3" in ax.get_title()


def test_noise_transition_accepts_row_fractions():
    matrix = np.full((10, 10), 0.3 / 9) + np.diag(np.full(10, 0.7 - 0.3 / 9))
    fig = fg.plot_noise_transition(matrix)
    assert "30.0% of training labels changed" in fig.axes[0].get_title()
    assert fig.axes[1].get_ylabel() == "fraction of the true class"


def test_sample_grid_titles_show_true_and_trained_labels():
    images = np.zeros((3, 32, 32, 3), dtype=np.uint8)
    fig = fg.plot_samples(images, true=[0, 1, 2], noisy=[0, 5, 2], ncols=3)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles[1] == "true: automobile\nlabel: dog"
    assert "1 of 3" in fig._suptitle.get_text()


def test_every_figure_function_returns_a_figure():
    assert isinstance(fg.plot_separation_curves(layer_table()), Figure)
    assert isinstance(fg.plot_four_way(metrics()), Figure)


def spread_table() -> pd.DataFrame:
    rows = [("mlp5", 0, l, -0.1 * l) for l in (1, 2, 3, 4)] + [("mlp5", 1, l, -0.2 * l) for l in (1, 2, 3, 4)]
    rows += [("mlp7", 0, l, -0.3 * l) for l in range(1, 7)] + [("mlp7", 1, l, -0.3 * l) for l in range(1, 6)]
    return pd.DataFrame(rows, columns=["model", "seed", "layer", "change"])


def test_seed_spread_draws_mean_and_band_per_model_over_shared_x_only():
    ax = fg.plot_seed_spread(spread_table(), x="layer", y="change", ylabel="change", title="t").axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    mlp5, mlp7 = lines["MLP5 (mean of 2 seeds)"], lines["MLP7 (mean of 2 seeds)"]
    np.testing.assert_allclose(mlp5.get_ydata(), [-0.15, -0.3, -0.45, -0.6])
    assert list(mlp7.get_xdata()) == [1, 2, 3, 4, 5]       # layer 6 only in seed 0: left out
    assert mlp5.get_color() == fg.MODEL_COLORS["mlp5"]
    band = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(band) == 2
    low, high = band[0].get_paths()[0].vertices[:, 1].min(), band[0].get_paths()[0].vertices[:, 1].max()
    assert (low, high) == pytest.approx((-0.8, -0.1))


def test_seed_spread_of_one_seed_draws_no_band_and_can_use_log_axes():
    one = spread_table().query("seed == 0").rename(columns={"layer": "epoch"}).assign(change=lambda t: -t["change"])
    ax = fg.plot_seed_spread(one, x="epoch", y="change", ylabel="r", title="t", log_epochs=True, log_y=True).axes[0]
    assert not [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert ax.get_xscale() == "symlog" and ax.get_yscale() == "log"    # 0.1 to 1.8: over a decade
    narrow = one.assign(change=lambda t: 10 + t["change"])
    ax = fg.plot_seed_spread(narrow, x="epoch", y="change", ylabel="r", title="t", log_y=True).axes[0]
    assert ax.get_yscale() == "linear"


# --------------------------------------------------------------------------- verdict figures
def test_interval_plot_fills_only_markers_whose_interval_excludes_the_null():
    table = pd.DataFrame({"model": ["mlp3", "mlp5", "mlp7"], "seed": [0, 0, 0], "change": [0.02, 0.01, np.nan],
                          "low": [0.01, -0.01, np.nan], "high": [0.03, 0.03, np.nan]})
    ax = fg.plot_intervals(table, "change", "low", "high", "points", "t", scale=100).axes[0]
    markers = [l for l in ax.lines if l.get_marker() == "o"]
    assert len(markers) == 2
    faces = {round(l.get_xdata()[0], 6): l.get_markerfacecolor() for l in markers}
    assert to_rgba(faces[2.0]) != to_rgba("white") and to_rgba(faces[1.0]) == to_rgba("white")
    assert "MLP7 seed 0 (not testable)" in [t.get_text() for t in ax.get_yticklabels()]


def test_separation_index_draws_initialisation_and_last_epoch_per_model_with_the_baseline():
    rows = [(m, s, e, l, 0.1 * l * (e > 0)) for m in ("mlp3", "mlp5") for s in (0, 1) for e in (0, 40)
            for l in range(1, 3 if m == "mlp3" else 5)]
    index = pd.DataFrame(rows, columns=["model", "seed", "epoch", "layer", "index"])
    fig = fg.plot_separation_index(index, "t")
    assert len(fig.axes) == 2
    labels = [l.get_label() for l in fig.axes[1].lines]
    assert "epoch 0 (initialisation)" in labels and "MLP5: epoch 40 (last snapshot)" in labels
    assert any(l.get_ydata()[0] == 0 and l.get_linestyle() == "--" for l in fig.axes[0].lines)


def test_ratio_plots_and_ablation_bars_return_labelled_figures():
    per_image = pd.DataFrame([(e, l, 3.0 + e * l / 10, 2.5, 3.5) for e in (0, 1, 10) for l in (1, 2)],
                             columns=["epoch", "layer", "ratio", "ratio_q25", "ratio_q75"])
    assert "per-image ratio" in fg.plot_ratio_over_training(per_image, metrics(), "t").axes[0].get_ylabel()
    dist = fg.plot_ratio_distribution({"epoch 0": np.array([2.0, 3.0, 4.0]), "epoch 9": np.array([20.0, 30.0])}, "t")
    assert "median 25.0x" in [t.get_text() for t in dist.axes[0].get_legend().get_texts()][1]
    table = pd.DataFrame({"label": ["baseline", "large neuron", "random neuron 1"], "layer": 2, "neuron": [-1, 7, 3],
                          "mode": "mean", "d_test_acc": [0.0, -0.1, 0.0], "d_test_acc_low": [0.0, -0.12, -0.01],
                          "d_test_acc_high": [0.0, -0.08, 0.01]})
    ax = fg.plot_ablation(table).axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["7", "3"]
    assert "Layer 2, mean-ablation" in ax.get_title()
