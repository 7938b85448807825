"""Phase detection on synthetic four-way curves whose events are planted at known epochs."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from ddd_support.analysis.phases import (PHASE_FIELDS, Phases, detect_phases, mean_band,
                                         mean_metrics, phase_table, smooth_curve)

EPOCHS = np.arange(0, 301)


def curve(*knots: tuple[float, float]) -> np.ndarray:
    """Piecewise-linear curve over EPOCHS through (epoch, value) knots."""
    x, y = zip(*knots)
    return np.interp(EPOCHS, x, y)


def metrics(test_acc: np.ndarray | None = None, test_loss: np.ndarray | None = None,
            clean_acc: np.ndarray | None = None) -> pd.DataFrame:
    """Double descent planted: clean fit at 20, noisy fit 31..51, test peak 10, dip 60, recovery at 200."""
    return pd.DataFrame({
        "epoch": EPOCHS,
        "clean_acc": curve((0, 0.1), (20, 1.0)) if clean_acc is None else clean_acc,
        "noisy_acc": curve((0, 0.05), (30, 0.05), (31, 0.5), (50, 0.98), (51, 1.0)),
        "noisy_true_acc": curve((0, 0.1), (15, 0.55), (51, 0.0)),
        "test_acc": curve((0, 0.1), (10, 0.6), (60, 0.45), (200, 0.58)) if test_acc is None else test_acc,
        "test_loss": curve((0, 2.3), (10, 1.2), (60, 2.5), (300, 1.6)) if test_loss is None else test_loss,
        "clean_loss": 0.0, "noisy_loss": 0.0, "noisy_true_loss": 0.0,
    })


@pytest.fixture(scope="module")
def planted() -> Phases:
    return detect_phases(metrics())


def test_clean_fit_epoch_is_first_epoch_at_99_percent(planted):
    assert planted.clean_fit_epoch == 20


def test_noisy_fit_starts_when_noisy_accuracy_leaves_its_floor(planted):
    assert planted.noisy_fit_start_epoch == 31


def test_noisy_fit_ends_when_noisy_labels_are_99_percent_fitted(planted):
    assert planted.noisy_fit_end_epoch == 51


def test_noisy_true_accuracy_peak_is_found(planted):
    assert (planted.noisy_true_peak_epoch, planted.noisy_true_peak_acc) == (15, pytest.approx(0.55))


def test_test_accuracy_peak_and_dip_are_at_planted_epochs(planted):
    assert (planted.test_peak_epoch, planted.test_dip_epoch) == (10, 60)


def test_reported_accuracies_are_the_recorded_values(planted):
    assert planted.test_peak_acc == pytest.approx(0.6)
    assert planted.test_dip_acc == pytest.approx(0.45)


def test_recovery_after_the_dip_is_regeneralization(planted):
    assert planted.recovers_from_dip
    assert planted.recovery_epoch == 200
    assert planted.recovery_acc == pytest.approx(0.58)
    assert 0.1 < planted.dip_recovery <= 0.13


def test_test_loss_minimum_peak_and_second_descent(planted):
    assert (planted.test_loss_min_epoch, planted.test_loss_peak_epoch) == (10, 60)
    assert planted.test_loss_second_descent
    assert planted.test_loss_final == pytest.approx(1.6)


def test_loss_that_keeps_rising_has_no_second_descent():
    ph = detect_phases(metrics(test_loss=curve((0, 2.3), (10, 1.2), (300, 4.0))))
    assert ph.test_loss_peak_epoch == 300
    assert not ph.test_loss_second_descent


def test_accuracy_that_stays_low_after_the_dip_does_not_regeneralize():
    ph = detect_phases(metrics(test_acc=curve((0, 0.1), (10, 0.6), (60, 0.45), (300, 0.45))))
    assert ph.test_dip_epoch == 60
    assert not ph.recovers_from_dip
    assert ph.recovery_epoch is None


def test_single_epoch_spike_is_not_taken_for_regeneralization():
    test_acc = curve((0, 0.1), (10, 0.6), (60, 0.45), (300, 0.45))
    test_acc[150] += 0.1
    assert not detect_phases(metrics(test_acc=test_acc)).recovers_from_dip


def test_monotone_test_accuracy_has_no_peak_or_dip():
    ph = detect_phases(metrics(test_acc=curve((0, 0.1), (300, 0.7))))
    assert (ph.test_peak_epoch, ph.test_dip_epoch, ph.recovers_from_dip) == (None, None, False)
    assert ph.final_test_acc == pytest.approx(0.7)


def test_drop_smaller_than_min_drop_is_not_a_peak():
    ph = detect_phases(metrics(test_acc=curve((0, 0.1), (10, 0.6), (60, 0.595), (300, 0.7))))
    assert ph.test_peak_epoch is None


def test_clean_fit_never_reached_is_none():
    assert detect_phases(metrics(clean_acc=curve((0, 0.1), (300, 0.9)))).clean_fit_epoch is None


def test_thresholds_change_the_detected_epochs():
    assert detect_phases(metrics(), clean_fit_fraction=0.5).clean_fit_epoch == 9


def test_run_without_noisy_samples_has_no_noisy_phases():
    m = metrics().assign(noisy_acc=np.nan, noisy_true_acc=np.nan)
    ph = detect_phases(m)
    assert (ph.noisy_fit_start_epoch, ph.noisy_fit_end_epoch, ph.noisy_true_peak_epoch) == (None, None, None)


def test_smoothing_leaves_monotone_curves_unchanged():
    values = np.sqrt(EPOCHS / 300)
    np.testing.assert_allclose(smooth_curve(EPOCHS, values), values)


def test_smoothing_removes_an_isolated_late_spike():
    values = np.full(len(EPOCHS), 0.5)
    values[100] = 0.9
    assert smooth_curve(EPOCHS, values)[100] == pytest.approx(0.5)


def test_smoothing_leaves_early_epochs_untouched():
    values = np.random.default_rng(0).random(len(EPOCHS))
    np.testing.assert_array_equal(smooth_curve(EPOCHS, values)[:10], values[:10])


def fake_run(model: str, seed: int, m: pd.DataFrame) -> SimpleNamespace:
    return SimpleNamespace(model=model, seed=seed, metrics=m, config={"n_test": 10000})


def test_phase_table_has_one_row_per_run_with_every_field():
    table = phase_table([fake_run("mlp3", 0, metrics()), fake_run("mlp7", 1, metrics())])
    assert list(table[["model", "seed"]].itertuples(index=False, name=None)) == [("mlp3", 0), ("mlp7", 1)]
    assert set(PHASE_FIELDS) <= set(table.columns)
    assert list(table["test_dip_epoch"]) == [60, 60]


def two_seeds() -> list[SimpleNamespace]:
    a = pd.DataFrame({"epoch": [0, 1, 2], "test_acc": [0.1, 0.3, 0.5]})
    b = pd.DataFrame({"epoch": [0, 1, 2], "test_acc": [0.3, 0.5, 0.9]})
    return [fake_run("mlp3", 0, a), fake_run("mlp3", 1, b)]


def test_mean_band_gives_mean_and_min_max_across_seeds():
    band = mean_band(two_seeds(), "test_acc")
    np.testing.assert_allclose(band["mean"], [0.2, 0.4, 0.7])
    np.testing.assert_allclose(band["low"], [0.1, 0.3, 0.5])
    np.testing.assert_allclose(band["high"], [0.3, 0.5, 0.9])
    assert list(band["n"]) == [2, 2, 2]


def test_mean_band_std_is_symmetric_about_the_mean():
    band = mean_band(two_seeds(), "test_acc", band="std")
    std = np.std([[0.1, 0.3], [0.3, 0.5], [0.5, 0.9]], axis=1, ddof=1)
    np.testing.assert_allclose(band["high"] - band["mean"], std)
    np.testing.assert_allclose(band["mean"] - band["low"], std)


def test_mean_band_rejects_unknown_column():
    with pytest.raises(KeyError, match="no metrics column"):
        mean_band(two_seeds(), "nonsense")


def test_mean_metrics_keeps_only_epochs_every_seed_reached():
    runs = two_seeds()
    runs[1].metrics = runs[1].metrics.iloc[:2]
    m = mean_metrics(runs)
    assert list(m["epoch"]) == [0, 1]
    np.testing.assert_allclose(m["test_acc"], [0.2, 0.4])


def test_noise_floor_shrinks_with_the_test_set_size():
    from ddd_support.analysis.phases import test_noise_floor

    assert test_noise_floor(0.3, 500) == pytest.approx(2 * (2 * 0.3 * 0.7 / 500) ** 0.5)
    assert test_noise_floor(0.3, 10000) < test_noise_floor(0.3, 500) / 4


def test_a_second_rise_within_test_set_noise_is_not_regeneralisation():
    epochs = np.arange(0, 61)
    test = np.where(epochs < 10, 0.2 + 0.02 * epochs, 0.4 - 0.005 * np.minimum(epochs - 10, 30))
    test = test + np.where(epochs > 40, 0.02 * np.minimum(epochs - 40, 10) / 10, 0.0)
    m = pd.DataFrame({"epoch": epochs, "clean_acc": 1.0, "noisy_acc": np.minimum(1.0, epochs / 30),
                      "noisy_true_acc": 0.2, "test_acc": test, "test_loss": 2.0})
    assert detect_phases(m).recovers_from_dip
    assert not detect_phases(m, n_test=500).recovers_from_dip


def test_a_rise_before_the_noisy_labels_are_fit_is_not_regeneralisation():
    epochs = np.arange(0, 81)
    test = np.interp(epochs, [0, 5, 8, 12, 40, 80], [0.1, 0.34, 0.29, 0.35, 0.28, 0.28])
    noisy = np.interp(epochs, [0, 10, 60, 80], [0.1, 0.2, 0.9, 0.95])  # never reaches 99%
    m = pd.DataFrame({"epoch": epochs, "clean_acc": 0.9, "noisy_acc": noisy,
                      "noisy_true_acc": 0.1, "test_acc": test, "test_loss": 2.0})
    p = detect_phases(m)
    assert p.test_dip_epoch is not None and p.noisy_fit_end_epoch is None
    assert not p.recovers_from_dip and p.recovery_epoch is None


def test_a_loss_fall_in_the_last_epochs_is_not_a_second_descent():
    epochs = np.arange(0, 121)
    loss = np.interp(epochs, [0, 10, 118, 120], [2.3, 1.8, 7.0, 6.7])
    m = pd.DataFrame({"epoch": epochs, "clean_acc": 1.0, "noisy_acc": 1.0, "noisy_true_acc": 0.1,
                      "test_acc": 0.3, "test_loss": loss})
    ph = detect_phases(m)
    assert ph.test_loss_peak_epoch == 118 and not ph.test_loss_second_descent
