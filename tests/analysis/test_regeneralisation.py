"""The post-fit change of test accuracy: planted runs whose answer is known."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ddd_support.analysis.phases import detect_phases
from ddd_support.analysis.regeneralisation import (fit_and_end_windows, noisy_fit_epoch, post_fit_change)
from ddd_support.runs.reader import RunData

N_TEST = 2000


def planted_run(test_curve: np.ndarray, noisy_curve: np.ndarray, seed: int = 0, paired: bool = True) -> RunData:
    """A run whose epoch-e test correctness has exactly round(test_curve[e] * N_TEST) right images.

    Images are ranked once by a fixed random "difficulty": the easiest k images are right, so a
    rise of accuracy is a set of images that turn right (the paired case at its cleanest).
    """
    epochs = np.arange(len(test_curve))
    order = np.random.default_rng(seed).permutation(N_TEST)
    correct = np.zeros((len(epochs), N_TEST), dtype=bool)
    for e, acc in enumerate(test_curve):
        correct[e, order[:int(round(acc * N_TEST))]] = True
    metrics = pd.DataFrame({"epoch": epochs, "clean_acc": 1.0, "noisy_acc": noisy_curve, "noisy_true_acc": 0.1,
                            "test_acc": correct.mean(axis=1), "test_loss": 2.0})
    run = RunData(path=Path("planted"), config={"model": "mlp7", "seed": seed, "n_test": N_TEST, "base_width": 8},
                  provenance={}, metrics=metrics, snapshot_epochs=[0], probe={},
                  labels={"test_indices": np.arange(N_TEST)})
    run._extra["test_correct"] = correct if paired else None
    return run


EPOCHS = np.arange(0, 201)
FITTED_AT_40 = np.interp(EPOCHS, [0, 10, 40, 200], [0.1, 0.2, 1.0, 1.0])


def test_fit_epoch_and_windows_follow_the_definition():
    metrics = pd.DataFrame({"epoch": EPOCHS, "noisy_acc": FITTED_AT_40})
    assert noisy_fit_epoch(metrics) == 40
    fit, end = fit_and_end_windows(metrics)
    assert fit == [40, 41, 42, 43, 44] and end == list(range(181, 201))


def test_a_rise_of_five_points_after_the_fit_passes():
    test = np.interp(EPOCHS, [0, 10, 40, 60, 200], [0.1, 0.45, 0.33, 0.33, 0.38])
    row = post_fit_change(planted_run(test, FITTED_AT_40))
    assert row["outcome"] == "rises" and row["low"] > 0
    assert row["change"] == pytest.approx(np.mean(test[181:]) - np.mean(test[40:45]), abs=1e-3)


def test_a_rise_within_the_noise_of_2000_images_is_no_detectable_change():
    rng = np.random.default_rng(3)
    test = np.interp(EPOCHS, [0, 10, 40, 200], [0.1, 0.45, 0.33, 0.332])  # four images turn right
    run = planted_run(test, FITTED_AT_40)
    # epoch-to-epoch noise: a random fifth of the images flips at every epoch
    flip = rng.random(run.test_correct.shape) < 0.2
    run._extra["test_correct"] = run.test_correct ^ flip
    run.metrics["test_acc"] = run.test_correct.mean(axis=1)
    row = post_fit_change(run)
    assert row["outcome"] == "no detectable change" and row["low"] < 0 < row["high"]


def test_recovery_during_the_fit_is_not_a_post_fit_rise():
    """The old measure (best accuracy after the fit minus the dip *before* it) calls this a recovery."""
    test = np.interp(EPOCHS, [0, 10, 25, 40, 200], [0.1, 0.45, 0.30, 0.36, 0.36])
    run = planted_run(test, FITTED_AT_40)
    assert detect_phases(run.metrics, n_test=N_TEST).recovers_from_dip  # dip at 25, before the fit at 40
    row = post_fit_change(run)
    assert row["outcome"] == "no detectable change" and row["change"] == pytest.approx(0.0, abs=1e-3)


def test_a_fall_after_the_fit_is_named_a_fall():
    test = np.interp(EPOCHS, [0, 10, 40, 200], [0.1, 0.45, 0.36, 0.31])
    assert post_fit_change(planted_run(test, FITTED_AT_40))["outcome"] == "falls"


def test_never_fitting_the_noisy_labels_is_not_testable():
    test = np.interp(EPOCHS, [0, 10, 200], [0.1, 0.45, 0.40])
    noisy = np.interp(EPOCHS, [0, 200], [0.1, 0.8])
    row = post_fit_change(planted_run(test, noisy))
    assert row["outcome"] == "not testable" and np.isnan(row["change"])


def test_a_fit_inside_the_end_window_is_not_testable():
    noisy = np.interp(EPOCHS, [0, 190, 200], [0.1, 0.5, 1.0])
    assert post_fit_change(planted_run(np.full(len(EPOCHS), 0.3), noisy))["outcome"] == "not testable"


def test_without_per_image_records_the_wider_unpaired_interval_is_used():
    test = np.interp(EPOCHS, [0, 10, 40, 60, 200], [0.1, 0.45, 0.33, 0.33, 0.38])
    paired = post_fit_change(planted_run(test, FITTED_AT_40))
    unpaired = post_fit_change(planted_run(test, FITTED_AT_40, paired=False))
    assert unpaired["change"] == pytest.approx(paired["change"])
    assert unpaired["high"] - unpaired["low"] > paired["high"] - paired["low"]
    assert "unpaired" in unpaired["method"]


def test_a_transient_99_percent_crossing_does_not_start_the_fit():
    # crosses 99% at epoch 30 for one epoch, falls back (as cpu MLP7 seed 1 does), holds from epoch 50
    noisy = np.interp(EPOCHS, [0, 10, 50, 200], [0.1, 0.2, 1.0, 1.0])
    noisy[30] = 0.995
    metrics = pd.DataFrame({"epoch": EPOCHS, "noisy_acc": noisy})
    assert noisy_fit_epoch(metrics) == int(np.flatnonzero(noisy >= 0.99)[1])   # the first epoch of the held stretch
    assert noisy_fit_epoch(metrics) > 30


def test_the_held_level_is_the_lowest_over_the_end_not_the_maximum():
    from ddd_support.analysis.regeneralisation import held_noisy_level

    noisy = np.full(len(EPOCHS), 1.0)
    noisy[195] = 0.874
    assert held_noisy_level(pd.DataFrame({"epoch": EPOCHS, "noisy_acc": noisy})) == pytest.approx(0.874)


def test_the_sensitivity_grid_has_every_variant_and_finds_a_flip():
    from ddd_support.analysis.claims import grid_verdicts
    from ddd_support.analysis.regeneralisation import GRID, sensitivity_grid

    # test accuracy dips right after the fit and comes back only for the last tenth: which windows count decides
    test = np.interp(EPOCHS, [0, 10, 40, 45, 170, 180, 200], [0.1, 0.45, 0.36, 0.33, 0.33, 0.36, 0.36])
    grid = sensitivity_grid(planted_run(test, FITTED_AT_40))
    assert len(grid) == len(GRID["level"]) * len(GRID["window"]) * len(GRID["end_fraction"]) == 18
    assert len(set(grid_verdicts(grid))) > 1
