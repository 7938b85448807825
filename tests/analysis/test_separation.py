"""Clean/noisy separation on snapshots whose class means have known cosines."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ddd_support.runs.reader import RunData
from ddd_support.analysis.separation import (cosine_similarity, layer_separation,
                                             separation_summary, separation_table)

SQRT_HALF = np.sqrt(0.5)


def class_means(rows: dict[int, list[float]], width: int = 3) -> np.ndarray:
    """(10, width) means: the given rows, NaN (empty class) for the rest."""
    out = np.full((10, width), np.nan)
    for cls, row in rows.items():
        out[cls] = row
    return out


def write_run(path: Path, snapshots: dict[int, dict[str, np.ndarray]]) -> RunData:
    """A two-layer run with only the snapshot arrays separation reads."""
    (path / "snapshots").mkdir(parents=True)
    for epoch, arrays in snapshots.items():
        np.savez(path / "snapshots" / f"epoch_{epoch:05d}.npz", epoch=epoch, **arrays)
    return RunData(path=path, config={"model": "mlp3", "seed": 0, "hidden_widths": [3, 3]},
                   provenance={}, metrics=pd.DataFrame({"epoch": [0]}),
                   snapshot_epochs=sorted(snapshots), probe={}, labels={})


def snapshot(layer1_noisy: np.ndarray, layer2_noisy: np.ndarray) -> dict[str, np.ndarray]:
    clean = class_means({0: [1, 0, 0], 1: [0, 2, 0], 2: [1, 1, 1]})
    by_noisy = class_means({0: [0, 1, 0], 1: [0, 1, 0]})
    return {"l1_mean_clean": clean, "l1_mean_noisy": layer1_noisy, "l1_mean_noisy_by_noisy": by_noisy,
            "l2_mean_clean": clean, "l2_mean_noisy": layer2_noisy, "l2_mean_noisy_by_noisy": by_noisy}


@pytest.fixture
def run(tmp_path: Path) -> RunData:
    same = class_means({0: [2, 0, 0], 1: [0, 5, 0], 2: [3, 3, 3]})           # cosine 1 everywhere
    apart = class_means({0: [1, 1, 0], 1: [1, 0, 0], 2: [0, 0, 0]})          # 1/sqrt2, 0, zero vector
    return write_run(tmp_path, {0: snapshot(same, same), 10: snapshot(same, apart)})


def test_cosine_of_two_vectors():
    assert cosine_similarity([1, 0], [1, 1]) == pytest.approx(SQRT_HALF)


def test_cosine_ignores_vector_length():
    assert cosine_similarity([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)


def test_cosine_of_rows():
    np.testing.assert_allclose(cosine_similarity([[1, 0], [0, 1]], [[0, 3], [0, 2]]), [0.0, 1.0])


def test_cosine_with_a_zero_or_nan_vector_is_nan():
    assert np.isnan(cosine_similarity([0, 0], [1, 1]))
    assert np.isnan(cosine_similarity([np.nan, 1], [1, 1]))


def test_cosine_rejects_different_shapes():
    with pytest.raises(ValueError, match="shapes differ"):
        cosine_similarity([1, 0], [1, 0, 0])


def test_separation_table_gives_the_known_cosines(run):
    table = separation_table(run).set_index(["epoch", "layer", "class"])["cosine"]
    assert table[(0, 1, 0)] == pytest.approx(1.0)
    assert table[(10, 2, 0)] == pytest.approx(SQRT_HALF)
    assert table[(10, 2, 1)] == pytest.approx(0.0)


def test_separation_table_skips_empty_classes_and_zero_means(run):
    table = separation_table(run)
    assert set(table[(table["epoch"] == 0)]["class"]) == {0, 1, 2}
    assert set(table[(table["epoch"] == 10) & (table["layer"] == 2)]["class"]) == {0, 1}
    assert table["cosine"].notna().all()


def test_grouping_by_noisy_label_reads_the_by_noisy_means(run):
    table = separation_table(run, by="noisy").set_index(["epoch", "layer", "class"])["cosine"]
    assert table[(0, 1, 0)] == pytest.approx(0.0)
    assert table[(0, 1, 1)] == pytest.approx(1.0)
    assert len(table) == 2 * 2 * 2


def test_separation_table_rejects_unknown_grouping(run):
    with pytest.raises(ValueError, match="by must be"):
        separation_table(run, by="label")


def test_layer_separation_averages_over_classes(run):
    layers = layer_separation(separation_table(run)).set_index(["epoch", "layer"])
    assert layers.loc[(10, 2), "cosine"] == pytest.approx((SQRT_HALF + 0.0) / 2)
    assert layers.loc[(10, 2), "n_classes"] == 2
    assert layers.loc[(10, 1), "cosine"] == pytest.approx(1.0)


def test_separation_summary_reports_first_and_last_snapshot_per_layer(run):
    summary = separation_summary(layer_separation(separation_table(run))).set_index("layer")
    assert summary.loc[2, "first"] == pytest.approx(1.0)
    assert summary.loc[2, "last"] == pytest.approx(SQRT_HALF / 2)
    assert summary.loc[2, "change"] == pytest.approx(SQRT_HALF / 2 - 1.0)
    assert summary.loc[1, "change"] == pytest.approx(0.0)


# --------------------------------------------------------------------------- the index and its baselines
from ddd_support.analysis.separation import class_cosines, depth_trend, index_table  # noqa: E402


def sampled_means(rng: np.random.Generator, centres: np.ndarray, spread: float, m: int,
                  shift: np.ndarray | None = None) -> np.ndarray:
    """(10, W) means of m samples per class drawn around ``centres`` (plus ``shift`` for the noisy group)."""
    out = np.empty_like(centres)
    for c in range(len(centres)):
        centre = centres[c] + (0 if shift is None else shift[c])
        out[c] = np.maximum(centre + rng.normal(0, spread, size=(m, centres.shape[1])), 0).mean(axis=0)
    return out


def planted_snapshot(rng: np.random.Generator, spreads: list[float], pull: list[float], m: int = 60,
                     width: int = 40) -> dict[str, np.ndarray]:
    """Layers with the given per-sample spread; the noisy group of layer l is pulled ``pull[l]`` of
    the way towards the next class's centre (0: drawn from the same distribution as the clean halves)."""
    centres = np.abs(np.random.default_rng(7).normal(1.0, 1.0, size=(10, width)))
    towards = np.roll(centres, 1, axis=0) - centres
    snap = {}
    for layer, (spread, p) in enumerate(zip(spreads, pull), start=1):
        snap[f"l{layer}_mean_clean_a"] = sampled_means(rng, centres, spread, m)
        snap[f"l{layer}_mean_clean_b"] = sampled_means(rng, centres, spread, m)
        snap[f"l{layer}_mean_noisy"] = sampled_means(rng, centres, spread, m, p * towards)
        snap[f"l{layer}_mean_clean"] = (snap[f"l{layer}_mean_clean_a"] + snap[f"l{layer}_mean_clean_b"]) / 2
        snap[f"l{layer}_absmax"] = centres.max(axis=0)
    return snap


def planted_index_run(tmp_path: Path, last_pull: list[float]) -> RunData:
    """Three layers; at epoch 0 nothing is pulled; by epoch 10 the per-sample spread has grown with depth
    (which alone lowers every raw cosine) and the noisy groups are pulled by ``last_pull``."""
    rng = np.random.default_rng(0)
    run = write_run(tmp_path, {0: planted_snapshot(rng, [0.5, 0.5, 0.5], [0, 0, 0]),
                               10: planted_snapshot(rng, [0.5, 2.0, 4.0], last_pull)})
    run.config["hidden_widths"] = [40, 40, 40]
    return run


def test_equal_groups_do_not_separate_even_where_the_raw_cosine_falls(tmp_path):
    run = planted_index_run(tmp_path, last_pull=[0, 0, 0])
    table = index_table(run)
    raw = layer_separation(separation_table(run))
    last = raw[raw["epoch"] == 10].set_index("layer")["cosine"]
    assert last[3] < last[1] - 0.02       # the raw cosine "separates" with depth ...
    trend = depth_trend(table)
    assert trend["outer_low"] < 0 < trend["outer_high"]   # ... the index does not
    assert trend["trend_low"] < 0 < trend["trend_high"]


def test_noisy_groups_pulled_towards_another_class_separate_with_depth(tmp_path):
    trend = depth_trend(index_table(planted_index_run(tmp_path, last_pull=[0.0, 0.3, 0.6])))
    assert trend["outer_low"] > 0 and trend["trend_low"] > 0
    assert 0.1 < trend["outer"] < 1.0   # part of the way to another class, not beyond it


def test_index_at_initialisation_is_near_zero(tmp_path):
    table = index_table(planted_index_run(tmp_path, last_pull=[0.0, 0.3, 0.6]))
    assert table[table["epoch"] == 0]["index"].abs().mean() < 0.05


def test_class_cosines_follow_the_definition_on_known_vectors():
    a = np.eye(10) + 1.0
    snap = {"l1_mean_clean_a": a, "l1_mean_clean_b": a.copy(), "l1_mean_noisy": a.copy(), "l1_absmax": np.ones(10)}
    snap["l1_mean_noisy"][0] = a[1]                      # class 0's noisy images look like class 1
    table = class_cosines(snap, 1).set_index("class")
    assert table.loc[0, "split_half"] == pytest.approx(1.0)
    assert table.loc[0, "index"] == pytest.approx(1.0)   # as far as another class
    assert table.loc[1, "index"] == pytest.approx(0.0)


def test_leaving_the_top_neurons_out_removes_a_shared_giant_coordinate():
    rng = np.random.default_rng(1)
    a = np.abs(rng.normal(1, 1, (10, 20)))
    noisy = np.abs(rng.normal(1, 1, (10, 20)))
    giant = np.zeros(20)
    giant[5] = 1000.0
    snap = {"l1_mean_clean_a": a + giant, "l1_mean_clean_b": a + giant, "l1_mean_noisy": noisy + giant,
            "l1_absmax": (a + giant).max(axis=0)}
    hidden = class_cosines(snap, 1)["clean_noisy"].mean()
    shown = class_cosines(snap, 1, exclude_top=1)["clean_noisy"].mean()
    assert hidden > 0.99 and shown < 0.9


def test_grouping_by_noisy_label_on_a_copy_without_those_means_is_refused(tmp_path):
    from ddd_support.errors import RunDirError

    run = planted_index_run(tmp_path, last_pull=[0, 0, 0])
    with pytest.raises(RunDirError, match="by='true'"):
        separation_table(run, by="noisy")


def test_a_drift_that_unseen_images_share_does_not_count_as_separation(tmp_path):
    """Noisy and unseen images drift from the clean training means alike: the index sees it, the net index does not."""
    rng = np.random.default_rng(0)
    snaps = {}
    for epoch, pull in ((0, 0.0), (10, 0.4)):
        snap = planted_snapshot(rng, [0.5, 0.5, 0.5], [0.0, pull / 2, pull])
        for layer, p in zip((1, 2, 3), (0.0, pull / 2, pull)):   # unseen images drawn like the noisy ones
            centres = np.abs(np.random.default_rng(7).normal(1.0, 1.0, size=(10, 40)))
            towards = np.roll(centres, 1, axis=0) - centres
            snap[f"l{layer}_mean_unseen"] = sampled_means(rng, centres, 0.5, 60, p * towards)
        snaps[epoch] = snap
    run = write_run(tmp_path, snaps)
    run.config["hidden_widths"] = [40, 40, 40]
    table = index_table(run)
    last = table[(table["epoch"] == 10) & (table["layer"] == 3)]
    assert last["index"].mean() > 0.1                       # the gross index "separates" ...
    trend = depth_trend(table)
    assert trend["net"] and trend["outer_low"] < 0.1 and abs(trend["outer"]) < 0.05   # ... net of unseen images not


def test_the_unseen_control_prefers_the_matched_group_over_all_test_images():
    from ddd_support.analysis.separation import unseen_mean

    snap = {"l1_mean_test": np.zeros((10, 3)), "l1_mean_unseen": np.ones((10, 3))}
    assert unseen_mean(snap, 1)[1] == "matched" and unseen_mean(snap, 1)[0][0, 0] == 1.0
    assert unseen_mean({"l1_mean_test": np.zeros((10, 3))}, 1)[1] == "all test images"
    assert unseen_mean({}, 1) == (None, "none")


@pytest.mark.parametrize("n_train", [None, 200])
def test_a_new_run_records_unseen_class_means_as_many_per_class_as_its_noisy_images(tmp_path, synthetic_arrays,
                                                                                     n_train):
    """All training images: the unseen ones are test images; a subset: training images it leaves out."""
    from ddd_support.runs.reader import load_run
    from ddd_support.train.driver import train
    from tests.conftest import tiny_config

    cfg = tiny_config(epochs=1, noise_rate=0.3, n_train=n_train, n_test=100)
    run = load_run(train(cfg, tmp_path, synthetic_arrays))
    snap = run.snapshot(run.snapshot_epochs[-1])
    noisy = np.bincount(run.labels["original"][run.labels["noisy_mask"]], minlength=10)
    pool = 10 if n_train is None else 30 - 20   # test images per class, or training images left out
    assert (snap["count_unseen"] == np.minimum(noisy, pool)).all()
    assert snap["l1_mean_unseen"].shape == snap["l1_mean_noisy"].shape
    assert index_table(run)["clean_unseen"].notna().all()


def test_a_run_without_label_noise_trains_on_a_subset_with_no_unseen_group(tmp_path, synthetic_arrays):
    """No noisy images, nothing to match: the unseen group is left out instead of being empty."""
    from ddd_support.runs.reader import load_run
    from ddd_support.train.driver import train
    from tests.conftest import tiny_config

    run = load_run(train(tiny_config(epochs=1, noise_rate=0.0, n_train=200, n_test=100), tmp_path, synthetic_arrays))
    assert "l1_mean_unseen" not in run.snapshot(run.snapshot_epochs[-1])
