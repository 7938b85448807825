"""Intervals, paired tests and three-valued verdicts: planted answers."""

import numpy as np
import pytest
from scipy import stats as sps

from ddd_support.analysis.stats import (FAILS, HOLDS, NOT_TESTABLE, Interval, class_interval, mcnemar,
                                        outcome, paired_change, percentile_rank, seed_interval,
                                        unpaired_change, verdict)


def flips(n: int, right_before: int, fixed: int, broken: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Correctness of n images before and after: ``fixed`` wrong ones become right, ``broken`` right ones wrong."""
    rng = np.random.default_rng(seed)
    before = np.zeros(n, dtype=bool)
    before[rng.choice(n, right_before, replace=False)] = True
    after = before.copy()
    after[rng.choice(np.flatnonzero(~before), fixed, replace=False)] = True
    after[rng.choice(np.flatnonzero(before), broken, replace=False)] = False
    return before, after


def test_paired_change_of_sixty_fixed_images_out_of_2000_is_a_rise():
    before, after = flips(2000, 700, fixed=60, broken=0)
    ci = paired_change(before, after)
    assert ci.estimate == pytest.approx(0.03)
    assert ci.low > 0 and ci.direction() == "up"


def test_paired_change_within_noise_includes_zero():
    before, after = flips(2000, 700, fixed=40, broken=36)
    ci = paired_change(before, after)
    assert ci.estimate == pytest.approx(0.002)
    assert ci.low < 0 < ci.high and outcome(ci, "rises", "falls") == "no detectable change"


def test_paired_interval_is_narrower_than_the_unpaired_one_for_the_same_accuracies():
    before, after = flips(2000, 700, fixed=60, broken=20)
    paired, unpaired = paired_change(before, after), unpaired_change(before.mean(), after.mean(), 2000)
    assert paired.estimate == pytest.approx(unpaired.estimate)
    assert paired.high - paired.low < 0.5 * (unpaired.high - unpaired.low)


def test_mcnemar_counts_discordant_images_and_gives_the_exact_p_value():
    before, after = flips(100, 50, fixed=10, broken=0)
    result = mcnemar(before, after)
    assert (result["a_only"], result["b_only"]) == (0, 10)
    assert result["p_value"] == pytest.approx(2 * 0.5 ** 10)
    assert mcnemar(before, before)["p_value"] == 1.0


def test_seed_interval_of_one_seed_has_no_bounds_and_of_three_uses_student_t():
    one = seed_interval([0.02])
    assert one.estimate == 0.02 and np.isnan(one.low) and np.isnan(one.high)
    three = seed_interval([1.0, 2.0, 3.0])
    half = sps.t.ppf(0.975, 2) * 1.0 / np.sqrt(3)
    assert (three.low, three.high) == pytest.approx((2 - half, 2 + half))


def test_class_interval_ignores_nan_classes():
    ci = class_interval(np.array([1.0, 2.0, np.nan, 3.0]))
    assert ci.n == 3 and ci.estimate == pytest.approx(2.0)


def test_verdict_is_three_valued():
    assert verdict(Interval(0.02, 0.01, 0.03, 100)) == HOLDS
    assert verdict(Interval(0.02, -0.01, 0.05, 100)) == FAILS
    assert verdict(Interval(-0.02, -0.03, -0.01, 100), side="below") == HOLDS
    assert verdict(None) == NOT_TESTABLE
    assert verdict(Interval(0.02, float("nan"), float("nan"), 1)) == NOT_TESTABLE


def test_percentile_rank_counts_ties_half():
    assert percentile_rank(5.0, np.array([1.0, 2.0, 5.0, 9.0])) == pytest.approx(0.625)
    assert np.isnan(percentile_rank(1.0, np.array([])))
