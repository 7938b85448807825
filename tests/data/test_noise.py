import numpy as np
import pytest

from ddd_support.errors import ConfigError
from ddd_support.data.noise import NoisyLabels, symmetric_noise, transition_matrix

LABELS = np.repeat(np.arange(10), 100)


def test_exactly_round_rate_times_n_labels_are_changed():
    for rate in (0.0, 0.1, 0.3, 0.333):
        out = symmetric_noise(LABELS, rate, seed=0)
        assert out.mask.sum() == round(rate * len(LABELS))


def test_noisy_labels_never_equal_true_labels():
    out = symmetric_noise(LABELS, 0.3, seed=1)
    assert np.all(out.noisy[out.mask] != out.original[out.mask])
    assert np.array_equal(out.noisy[~out.mask], out.original[~out.mask])


def test_original_labels_are_kept():
    out = symmetric_noise(LABELS, 0.3, seed=1)
    assert np.array_equal(out.original, LABELS)


def test_same_seed_same_noise_other_seed_other_noise():
    a, b, c = (symmetric_noise(LABELS, 0.3, seed=s) for s in (5, 5, 6))
    assert np.array_equal(a.noisy, b.noisy)
    assert not np.array_equal(a.noisy, c.noisy)


def test_new_labels_are_uniform_over_the_other_nine_classes():
    labels = np.zeros(90000, dtype=np.int64)
    out = symmetric_noise(labels, 0.5, seed=0)
    counts = np.bincount(out.noisy[out.mask], minlength=10)
    assert counts[0] == 0
    expected = out.mask.sum() / 9
    assert np.all(np.abs(counts[1:] - expected) < 5 * np.sqrt(expected))


def test_exact_per_class_spreads_noise_in_proportion_to_class_size():
    out = symmetric_noise(LABELS, 0.3, seed=2, exact_per_class=True)
    assert np.all(np.bincount(LABELS[out.mask], minlength=10) == 30)


@pytest.mark.parametrize("rate", [-0.01, 1.0, 2.0])
def test_rate_outside_unit_interval_is_rejected(rate):
    with pytest.raises(ConfigError, match=r"\[0, 1\)"):
        symmetric_noise(LABELS, rate, seed=0)


def test_labels_out_of_range_are_rejected():
    with pytest.raises(ConfigError, match="labels must lie"):
        symmetric_noise(np.array([0, 10]), 0.5, seed=0)


def test_mismatched_shapes_are_rejected():
    with pytest.raises(ConfigError, match="one length"):
        NoisyLabels(noisy=np.zeros(3, int), original=np.zeros(4, int), mask=np.zeros(3, bool))


def test_transition_matrix_has_unit_rows_and_one_minus_rate_on_the_diagonal():
    out = symmetric_noise(LABELS, 0.3, seed=0, exact_per_class=True)
    t = transition_matrix(out.original, out.noisy)
    assert np.allclose(t.sum(axis=1), 1.0)
    assert np.allclose(np.diag(t), 0.7)
