"""Intervals, paired tests and four-valued verdicts: planted answers."""

import numpy as np
import pytest
from scipy import stats as sps

from ddd_support.analysis.stats import (HOLDS, INCONCLUSIVE, NOT_TESTABLE, RULED_OUT, Interval, class_interval,
                                        holm, mcnemar, observed, outcome, p_values, paired_change, percentile_rank,
                                        seed_interval, unpaired_change, verdict)


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


def test_an_interval_that_includes_zero_and_the_effect_is_inconclusive_not_a_failure():
    # the cpu MLP7 post-fit change over seeds: +0.03 [-3.5, +3.6] points against an effect of 1 point
    assert verdict(Interval(0.0003, -0.035, 0.036, 3), effect=0.01) == INCONCLUSIVE


def test_a_tight_interval_around_zero_rules_the_effect_out():
    assert verdict(Interval(0.0005, -0.004, 0.005, 2000), effect=0.01) == RULED_OUT
    # a detectable rise smaller than the effect of interest is ruled out too
    assert verdict(Interval(0.004, 0.002, 0.006, 2000), effect=0.01) == RULED_OUT


def test_verdict_holds_only_beyond_zero_on_the_claimed_side_and_not_testable_without_bounds():
    assert verdict(Interval(0.02, 0.01, 0.03, 100), effect=0.01) == HOLDS
    assert verdict(Interval(-0.02, -0.03, -0.01, 100), effect=0.01, side="below") == HOLDS
    assert verdict(Interval(-0.02, -0.03, -0.01, 100), effect=0.01) == RULED_OUT
    assert verdict(None, effect=0.01) == NOT_TESTABLE
    assert verdict(Interval(0.02, float("nan"), float("nan"), 1), effect=0.01) == NOT_TESTABLE


def test_adjusted_p_values_can_only_weaken_a_verdict():
    ci = Interval(0.02, 0.001, 0.039, 100)
    p_holds, p_out = p_values(ci, 0.01)
    assert p_holds < 0.025 and verdict(ci, 0.01, p_holds=p_holds) == HOLDS
    assert verdict(ci, 0.01, p_holds=3 * p_holds, p_ruled_out=p_out) == INCONCLUSIVE


def test_p_values_agree_with_the_interval_they_come_from():
    ci = Interval(0.02, 0.0, 0.04, 100)   # the lower bound sits on zero: one-sided p = 0.025
    assert p_values(ci, 0.01)[0] == pytest.approx(0.025, rel=1e-6)
    assert p_values(Interval(0.0, -0.01, 0.01, 100), 0.01)[1] == pytest.approx(0.025, rel=1e-6)


def test_holm_multiplies_the_smallest_p_by_the_family_size_and_keeps_the_order():
    adjusted = holm([0.01, 0.04, np.nan, 0.03])
    assert adjusted[0] == pytest.approx(0.03) and adjusted[3] == pytest.approx(0.06)
    assert adjusted[1] == pytest.approx(0.06) and np.isnan(adjusted[2])


def test_observations_hold_at_the_effect_and_are_ruled_out_short_of_it():
    assert observed(0.96, 0.95) == HOLDS and observed(0.9, 0.95) == RULED_OUT
    assert observed(0.67, 0.5, side="below") == RULED_OUT and observed(float("nan"), 1.0) == NOT_TESTABLE


def test_seed_interval_is_never_narrower_than_the_seeds_own_sampling_noise():
    # three seeds that agree by chance to within 0.001 while each is measured to +-0.01
    agree = seed_interval([0.020, 0.021, 0.019], errors=[0.005, 0.005, 0.005])
    assert agree.high - agree.low == pytest.approx(2 * sps.t.ppf(0.975, 2) * 0.005 / np.sqrt(3))
    alone = seed_interval([0.02], errors=[0.005])
    assert (alone.low, alone.high) == pytest.approx((0.02 - 1.959964 * 0.005, 0.02 + 1.959964 * 0.005))


def test_percentile_rank_counts_ties_half():
    assert percentile_rank(5.0, np.array([1.0, 2.0, 5.0, 9.0])) == pytest.approx(0.625)
    assert np.isnan(percentile_rank(1.0, np.array([])))
