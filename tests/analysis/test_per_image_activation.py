"""The large activation measured per image (as Sun et al. do), with a planted always-on neuron."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ddd_support.analysis.large_activation import (best_correlations, candidate_layer, large_activation_exists,
                                                   per_image_ratio, per_image_table, persistent_from,
                                                   random_neuron_correlations)
from ddd_support.runs.reader import RunData

N_PROBE, WIDTH, PLANTED = 400, 64, 7


def probe_arrays(layer: int, post: np.ndarray, random_neurons: np.ndarray) -> dict[str, np.ndarray]:
    """The snapshot's per-image and random-neuron arrays of one layer, computed independently of the package."""
    medians = np.array([np.sort(r[r > 0])[((r > 0).sum() - 1) // 2] if (r > 0).any() else 0.0 for r in post])
    absmax = post.max(axis=0)
    top = np.argsort(absmax)[::-1][:2]
    return {f"l{layer}_img_top": post.max(axis=1), f"l{layer}_img_argmax": post.argmax(axis=1),
            f"l{layer}_img_median_nonzero": medians, f"l{layer}_rand_idx": random_neurons,
            f"l{layer}_rand_act": post[:, random_neurons], f"l{layer}_absmax": absmax,
            f"l{layer}_median_abs_nonzero": np.float32(np.median(post[post > 0])),
            f"l{layer}_median_abs": np.float32(np.median(post)), f"l{layer}_top_idx": top,
            f"l{layer}_top_val": absmax[top], f"l{layer}_top_act": post[:, top], f"l{layer}_top_pre": post[:, top]}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> RunData:
    """Layer 1 grows an always-on neuron 7 = 40 * brightness + 20 after epoch 0; layer 2 stays random."""
    path: Path = tmp_path_factory.mktemp("run")
    rng = np.random.default_rng(0)
    brightness = rng.uniform(0.1, 0.9, N_PROBE)
    probe = {"brightness": brightness, "contrast": rng.uniform(0.05, 0.3, N_PROBE),
             "channel_mean": rng.uniform(0, 1, (N_PROBE, 3)), "pc": rng.normal(size=(N_PROBE, 5)),
             "label": rng.integers(0, 10, N_PROBE), "group": np.zeros(N_PROBE, int)}
    random_neurons = np.sort(rng.choice(np.setdiff1d(np.arange(WIDTH), [PLANTED]), 16, replace=False))
    (path / "snapshots").mkdir()
    for epoch in (0, 5, 50):
        layers = [np.maximum(rng.normal(0, 1, (N_PROBE, WIDTH)), 0) for _ in range(2)]
        if epoch > 0:
            layers[0][:, PLANTED] = 40 * brightness + 20
        arrays = {"logits": rng.normal(size=(N_PROBE, 10))}
        for layer, post in enumerate(layers, start=1):
            arrays.update(probe_arrays(layer, post, random_neurons))
        np.savez(path / "snapshots" / f"epoch_{epoch:05d}.npz", epoch=epoch, **arrays)
    return RunData(path=path, config={"model": "mlp3", "seed": 0, "hidden_widths": [WIDTH, WIDTH]},
                   provenance={}, metrics=pd.DataFrame({"epoch": range(51)}), snapshot_epochs=[0, 5, 50],
                   probe=probe, labels={})


@pytest.fixture(scope="module")
def table(run) -> pd.DataFrame:
    return per_image_table(run)


def test_per_image_ratio_is_top_over_the_median_of_active_neurons():
    snap = {"l1_img_top": np.array([10.0, 4.0, 3.0]), "l1_img_median_nonzero": np.array([2.0, 0.0, 1.0])}
    assert np.allclose(per_image_ratio(snap, 1), [5.0, np.nan, 3.0], equal_nan=True)
    assert per_image_ratio({"l1_absmax": np.ones(3)}, 1) is None   # schema 1: not recorded


def test_the_planted_neuron_tops_every_image_and_grows_the_ratio(table):
    last = table[(table["epoch"] == 50) & (table["layer"] == 1)].iloc[0]
    assert last["neuron"] == PLANTED and last["dominance"] == 1.0
    assert last["growth"] > 5 and large_activation_exists(last)


def test_random_weights_have_a_ratio_of_a_few_and_no_large_activation(table):
    init = table[table["epoch"] == 0]
    assert init["ratio"].between(1.5, 6).all() and (init["dominance"] < 0.2).all()
    layer2 = table[(table["epoch"] == 50) & (table["layer"] == 2)].iloc[0]
    assert not large_activation_exists(layer2)


def test_candidate_layer_is_the_layer_with_a_large_activation(table):
    assert candidate_layer(table) == (1, True)
    assert persistent_from(table, 1) == 5 and persistent_from(table, 2) is None


def test_without_a_large_activation_the_candidate_is_flagged(table):
    assert candidate_layer(table[table["layer"] == 2]) == (2, False)


def test_the_planted_neuron_tracks_brightness_beyond_every_random_neuron(run):
    snap = run.snapshot(50)
    best = best_correlations(run, snap, 1, snap["l1_top_act"][:, 0])
    assert snap["l1_top_idx"][0] == PLANTED
    assert best["input_r"] == pytest.approx(1.0) and best["output_r"] < 0.3
    randoms = random_neuron_correlations(run, snap, 1)
    assert len(randoms) == 16 and (randoms["input_r"] < 0.3).all()


def test_a_neuron_dominant_at_initialisation_is_not_emerging():
    # the cpu MLP7 layer 6 shape: one neuron tops 98% of images already at initialisation
    row = {"growth": 3.0, "dominance": 0.99, "dominance_at_init": 0.98}
    assert not large_activation_exists(row)
    assert large_activation_exists({**row, "dominance_at_init": 0.05})


def test_the_initial_dominance_is_recorded_per_layer(table):
    last = table[(table["epoch"] == 50) & (table["layer"] == 1)].iloc[0]
    assert last["dominance_at_init"] < 0.2 and last["dominance"] == 1.0


def test_schema_1_per_image_ratio_comes_from_the_top_neurons_stored_activations(run):
    from ddd_support.analysis.large_activation import top_neuron_image_table

    top = top_neuron_image_table(run)
    last = top[(top["epoch"] == 50) & (top["layer"] == 1)].iloc[0]
    snap = run.snapshot(50)
    expected = np.median(snap["l1_top_act"][:, 0] / float(snap["l1_median_abs_nonzero"]))
    assert last["neuron"] == PLANTED and last["active"] == 1.0
    assert last["ratio"] == pytest.approx(expected) and last["growth"] > 5
