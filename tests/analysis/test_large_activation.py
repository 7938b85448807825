"""The large activation on snapshots with a planted outlier neuron driven by image brightness."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ddd_support.analysis.large_activation import (correlate, correlation_ci, correlation_table, pearson,
                                                   dominant_neuron, emergence_epoch,
                                                   large_activation_table, largest_layer,
                                                   reference_magnitude)
from ddd_support.runs.reader import RunData

N_PROBE = 1000
PLANTED = 2                                    # the outlier neuron of layer 1
RATIOS = {0: 4.0, 1: 50.0, 2: 150.0, 3: 80.0, 4: 200.0, 5: 300.0}   # its size / median, per epoch


def layer_arrays(layer: int, absmax: list[float], median_nonzero: float, act: np.ndarray,
                 median: float = 0.0) -> dict[str, np.ndarray]:
    order = np.argsort(absmax)[::-1][:2]
    return {f"l{layer}_absmax": np.asarray(absmax), f"l{layer}_median_abs_nonzero": np.float32(median_nonzero),
            f"l{layer}_median_abs": np.float32(median), f"l{layer}_top_idx": order,
            f"l{layer}_top_val": np.asarray(absmax)[order],
            f"l{layer}_top_act": np.stack([act, act * 0], axis=1),
            f"l{layer}_top_pre": np.stack([act, act * 0], axis=1)}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> RunData:
    """Layer 1: neuron 2 = 3 * brightness + 1, RATIOS times the median; layer 2: ratio 5 (neuron 3)."""
    path: Path = tmp_path_factory.mktemp("run")
    rng = np.random.default_rng(0)
    brightness = rng.uniform(0.1, 0.9, N_PROBE)
    probe = {"brightness": brightness, "contrast": rng.uniform(0.05, 0.3, N_PROBE),
             "channel_mean": brightness[:, None] + rng.normal(0, 0.05, (N_PROBE, 3)),
             "label": rng.integers(0, 10, N_PROBE), "group": np.zeros(N_PROBE, int)}
    act = 3 * brightness + 1
    (path / "snapshots").mkdir()
    for epoch, ratio in RATIOS.items():
        arrays = {"logits": rng.normal(size=(N_PROBE, 10)),
                  **layer_arrays(1, [1.0, 2.0, ratio, 3.0], 1.0, act),
                  **layer_arrays(2, [1.0, 1.0, 1.0, 5.0], 1.0, rng.normal(size=N_PROBE))}
        np.savez(path / "snapshots" / f"epoch_{epoch:05d}.npz", epoch=epoch, **arrays)
    return RunData(path=path, config={"model": "mlp3", "seed": 0, "hidden_widths": [4, 4]},
                   provenance={}, metrics=pd.DataFrame({"epoch": range(6)}),
                   snapshot_epochs=sorted(RATIOS), probe=probe, labels={})


@pytest.fixture(scope="module")
def table(run) -> pd.DataFrame:
    return large_activation_table(run)


def test_table_finds_the_planted_neuron_and_its_ratio(table):
    layer1 = table[table["layer"] == 1].set_index("epoch")
    assert set(layer1["neuron"]) == {PLANTED}
    np.testing.assert_allclose(layer1["ratio"], list(RATIOS.values()))


def test_table_flags_ratios_at_or_above_the_threshold(table):
    layer1 = table[table["layer"] == 1].set_index("epoch")
    assert list(layer1["large"]) == [r >= 100 for r in RATIOS.values()]


def test_second_reference_compares_with_the_runner_up():
    snap = {"l1_absmax": np.array([1.0, 3.0, 300.0])}
    assert reference_magnitude(snap, 1, "second") == 3.0


def test_zero_nonzero_median_gives_nan_ratio_not_infinity(tmp_path):
    (tmp_path / "snapshots").mkdir()
    np.savez(tmp_path / "snapshots" / "epoch_00000.npz", **layer_arrays(1, [0.0, 0.0], 0.0, np.zeros(3)))
    run = RunData(path=tmp_path, config={"model": "mlp3", "seed": 0, "hidden_widths": [2]}, provenance={},
                  metrics=pd.DataFrame({"epoch": [0]}), snapshot_epochs=[0], probe={}, labels={})
    assert np.isnan(large_activation_table(run)["ratio"].iloc[0])


def test_zero_plain_median_gives_an_undefined_ratio_not_a_huge_one():
    snap = {"l1_median_abs": np.float32(0.0)}
    assert reference_magnitude(snap, 1, "median") == 0.0


def test_unknown_reference_is_rejected():
    with pytest.raises(ValueError, match="reference must be"):
        reference_magnitude({}, 1, "mean")


def test_persistent_emergence_is_the_first_epoch_it_stays_above_threshold(table):
    assert emergence_epoch(table, layer=1, threshold=100) == 4


def test_non_persistent_emergence_is_the_first_crossing(table):
    assert emergence_epoch(table, layer=1, threshold=100, persistent=False) == 2


def test_emergence_never_reached_is_none(table):
    assert emergence_epoch(table, layer=2, threshold=100) is None


def test_dominant_neuron_and_its_share_of_snapshots():
    t = pd.DataFrame({"epoch": [0, 1, 2, 3], "layer": 1, "neuron": [7, 7, 3, 7]})
    assert dominant_neuron(t, 1)[:2] == (7, 0.75)
    assert dominant_neuron(t, 1, min_epoch=3)[:2] == (7, 1.0)


def test_largest_layer_is_the_layer_with_the_largest_ratio(table):
    assert largest_layer(table) == 1
    assert largest_layer(table, epoch=0) == 2


def test_fisher_interval_of_a_known_correlation():
    low, high = correlation_ci(0.5, 103)         # se = 0.1 in z space
    z = np.arctanh(0.5)
    assert (low, high) == (pytest.approx(np.tanh(z - 0.1959964)), pytest.approx(np.tanh(z + 0.1959964)))


def test_correlate_constant_input_gives_nan():
    result = correlate(np.ones(10), np.arange(10))
    assert np.isnan(result["pearson"]) and np.isnan(result["spearman_low"])


def test_pearson_alone_is_correlate_s_pearson_bit_for_bit():
    rng = np.random.default_rng(0)
    x = rng.normal(size=50)
    y = 0.3 * x + rng.normal(size=50)
    y[[3, 7]] = np.nan                       # pairs left out on both sides
    assert pearson(x, y) == correlate(x, y)["pearson"]
    assert pearson(x, -2 * x) == pytest.approx(-1.0) and np.isnan(pearson(np.ones(10), np.arange(10)))
    assert np.isnan(pearson(x[:2], y[:2]))   # fewer than three pairs


@pytest.fixture(scope="module")
def correlations(run) -> pd.DataFrame:
    return correlation_table(run).set_index("quantity")


def test_correlation_table_uses_the_largest_layer_at_the_last_snapshot(correlations):
    assert (correlations.attrs["layer"], correlations.attrs["neuron"], correlations.attrs["epoch"]) == (1, PLANTED, 5)


def test_planted_neuron_correlates_perfectly_with_brightness(correlations):
    row = correlations.loc["brightness"]
    assert row["pearson"] == pytest.approx(1.0) and row["spearman"] == pytest.approx(1.0)
    assert row["kind"] == "input" and row["n"] == N_PROBE


def test_planted_neuron_barely_correlates_with_outputs(correlations):
    outputs = correlations[correlations["kind"] == "output"]
    assert len(outputs) == 4
    assert outputs["pearson"].abs().max() < 0.15


def test_confidence_intervals_bracket_the_estimates(correlations):
    finite = correlations.dropna(subset=["pearson"])
    assert (finite["pearson_low"] <= finite["pearson"]).all()
    assert (finite["pearson"] <= finite["pearson_high"]).all()
    assert (finite["spearman_low"] <= finite["spearman"]).all()


def test_class_quantities_name_the_class_they_use(correlations):
    names = [q for q in correlations.index if "class" in q]
    assert any(q.startswith("true class = ") for q in names)
    assert any(q.startswith("predicted class = ") for q in names)


def test_pre_activation_is_not_correlated_with_itself(run):
    table = correlation_table(run, activation="pre")
    assert "pre-activation" not in set(table["quantity"])
