"""The claims table: four-valued verdicts per run, their summary over seeds, and the sentences."""

import numpy as np
import pandas as pd
import pytest

from ddd_support.analysis.claims import (CLAIMS, EFFECTS, NO_SPREAD, ONE_VALUE, basis_label, claim_counts, claims_from, claims_over_seeds,
                                         first_epoch_at, flip_limited, over_seeds_sentence, phase_sentence,
                                         strongest_correlation, verdict_phrase)
from ddd_support.analysis.phases import detect_phases
from ddd_support.runs.reader import load_run
from ddd_support.analysis.stats import HOLDS, INCONCLUSIVE, NOT_TESTABLE, RULED_OUT, VERDICTS
from ddd_support.analysis.summary import summarise_run
from ddd_support.train.driver import train

from tests.conftest import tiny_config


def test_first_epoch_at_finds_the_first_crossing_or_none():
    m = pd.DataFrame({"epoch": [0, 1, 2, 3], "clean_acc": [0.1, 0.4, 0.6, 0.9]})
    assert first_epoch_at(m, "clean_acc", 0.5) == 2
    assert first_epoch_at(m, "clean_acc", 0.95) is None


def test_strongest_correlation_ignores_the_neurons_own_pre_activation():
    corr = pd.DataFrame({"quantity": ["pre-activation", "brightness", "logit margin"],
                         "kind": ["input", "input", "output"], "pearson": [0.99, -0.4, 0.2]})
    assert strongest_correlation(corr, "input") == pytest.approx(0.4)
    assert strongest_correlation(corr, "output") == pytest.approx(0.2)


@pytest.fixture(scope="module")
def trained_claims(tmp_path_factory, synthetic_arrays):
    run = load_run(train(tiny_config(epochs=12, base_width=32), tmp_path_factory.mktemp("c"), synthetic_arrays))
    return claims_from(summarise_run(run))


def test_every_claim_gets_one_of_the_four_verdicts_and_states_its_effect(trained_claims):
    assert list(trained_claims["claim"]) == list(CLAIMS) == list(EFFECTS)
    assert set(trained_claims["verdict"]) <= set(VERDICTS)
    assert (trained_claims["effect"] == [EFFECTS[c].size for c in CLAIMS]).all()


def test_clean_data_come_first_in_a_trained_run(trained_claims):
    row = trained_claims.set_index("claim").loc["clean_first"]
    assert row["verdict"] == HOLDS and row["statistic"] > 0


def test_claims_about_a_large_activation_are_not_testable_where_none_exists(trained_claims):
    rows = trained_claims.set_index("claim")
    assert rows.loc["large_exists", "verdict"] == RULED_OUT
    for claim in ("large_shallow", "large_input", "large_needed"):
        assert rows.loc[claim, "verdict"] == NOT_TESTABLE


def claims_table(rows: dict[tuple[str, int], tuple[float, float, float]], claim: str = "post_fit_rise",
                 verdict: str | None = None) -> pd.DataFrame:
    """Per (model, seed): (statistic, low, high) of one interval claim; NaN statistic = not testable."""
    return pd.DataFrame([{"model": m, "seed": s, "claim": claim, "statement": "", "effect": EFFECTS[claim].size,
                          "statistic": x, "low": lo, "high": hi, "outcome": "",
                          "verdict": NOT_TESTABLE if np.isnan(x) else (verdict or HOLDS)}
                         for (m, s), (x, lo, hi) in rows.items()])


NAN3 = (np.nan, np.nan, np.nan)


def test_over_seeds_the_interval_combines_the_seeds_and_counts_them():
    over = claims_over_seeds(claims_table({("mlp7", 0): (0.03, 0.02, 0.04), ("mlp7", 1): (0.04, 0.03, 0.05),
                                           ("mlp7", 2): (0.035, 0.025, 0.045), ("mlp3", 0): NAN3}))
    by_model = over.set_index("model")
    assert by_model.loc["mlp7", "verdict"] == HOLDS and by_model.loc["mlp7", "testable"] == 3
    assert by_model.loc["mlp7", "p_holds_holm"] >= by_model.loc["mlp7", "p_holds"]
    assert by_model.loc["mlp3", "verdict"] == NOT_TESTABLE


def test_over_seeds_seeds_that_disagree_in_sign_are_inconclusive_not_a_failure():
    # the cpu MLP7: -1.2, +1.6, -0.3 points, each measured to about +-0.9
    over = claims_over_seeds(claims_table({("mlp7", 0): (-0.012, -0.021, -0.003), ("mlp7", 1): (0.016, 0.007, 0.025),
                                           ("mlp7", 2): (-0.003, -0.013, 0.008)}))
    assert over.iloc[0]["verdict"] == INCONCLUSIVE and over.iloc[0]["low"] < 0 < 0.01 < over.iloc[0]["high"]


def test_over_seeds_a_tight_interval_around_zero_is_ruled_out():
    over = claims_over_seeds(claims_table({("mlp5", s): (0.0005 * s, -0.004, 0.005) for s in range(3)}))
    assert over.iloc[0]["verdict"] == RULED_OUT


def test_a_verdict_that_flips_inside_the_sensitivity_grid_is_at_best_inconclusive():
    assert flip_limited(HOLDS, [HOLDS, INCONCLUSIVE]) == INCONCLUSIVE
    assert flip_limited(RULED_OUT, [RULED_OUT, HOLDS]) == INCONCLUSIVE
    assert flip_limited(HOLDS, [HOLDS, HOLDS]) == HOLDS


def test_claim_counts_show_the_verdict_and_the_number_of_seeds_in_claim_order():
    counts = claim_counts(claims_table({("mlp5", 0): (0.03, 0.02, 0.04), ("mlp5", 1): (0.0, -0.01, 0.01),
                                        ("mlp3", 0): NAN3}))
    assert list(counts.columns) == ["mlp5", "mlp3"]
    assert counts.loc["post_fit_rise", "mlp5"] == "inconclusive (2 seeds)"
    assert counts.loc["post_fit_rise", "mlp3"] == NOT_TESTABLE


def test_sentences_over_seeds_give_points_interval_and_seed_count():
    over = claims_over_seeds(claims_table({("mlp7", 0): (0.02, 0.015, 0.025), ("mlp7", 1): (0.04, 0.035, 0.045)}))
    text = over_seeds_sentence(over, "post_fit_rise")
    assert text.startswith("MLP7 +3.0 (95% interval ") and text.endswith("points: inconclusive (2 seeds)")
    assert verdict_phrase(over, "post_fit_rise", "mlp7") == "inconclusive (2 seeds)"
    assert verdict_phrase(over, "post_fit_rise", "mlp3") == NOT_TESTABLE


def test_phase_sentence_names_peak_dip_and_the_post_fit_outcome():
    epochs = np.arange(0, 201)
    test = np.interp(epochs, [0, 10, 50, 200], [0.1, 0.5, 0.35, 0.55])
    noisy = np.interp(epochs, [0, 10, 40, 200], [0.1, 0.2, 1.0, 1.0])
    m = pd.DataFrame({"epoch": epochs, "clean_acc": 1.0, "noisy_acc": noisy, "noisy_true_acc": 0.1,
                      "test_acc": test, "test_loss": 2.0})
    post_fit = {"fit_epoch": 40, "change": 0.12, "low": 0.10, "high": 0.14, "outcome": "rises"}
    story = phase_sentence("mlp7", detect_phases(m, n_test=10000).as_dict(), post_fit)
    assert story.startswith("MLP7 peaks at epoch 10 (50.0%) and dips to 35.0% at epoch 50")
    assert story.endswith("changes by +12.0 (95% interval +10.0 to +14.0) points: rises")


def observations(values: dict[tuple[str, int], float], claim: str) -> pd.DataFrame:
    """Per (model, seed): a threshold claim's plain observation, judged per seed as ``claims_from`` does."""
    e = EFFECTS[claim]
    rows = claims_table({k: (x, np.nan, np.nan) for k, x in values.items()}, claim)
    rows["verdict"] = [NOT_TESTABLE if np.isnan(x) else HOLDS if (x >= e.size if e.side == "above" else x <= e.size)
                       else RULED_OUT for x in rows["statistic"]]
    return rows


def test_over_seeds_a_threshold_claim_every_seed_misses_is_inconclusive_while_its_interval_reaches_the_threshold():
    # every seed's growth falls short of 2x, so each seed alone is "ruled out", and the old
    # agreement rule said "ruled out"; but three seeds spread this far allow a mean beyond 2x
    over = claims_over_seeds(observations({("mlp7", 0): 1.2, ("mlp7", 1): 1.9, ("mlp7", 2): 1.1}, "large_exists"))
    row = over.iloc[0]
    assert row["ruled_out"] == 3 and row["verdict"] == INCONCLUSIVE
    assert row["low"] < 1.4 < 2.0 < row["high"] and row["basis"].startswith("t interval over 3 seeds")


def test_over_seeds_a_threshold_claim_whose_interval_lies_short_of_the_threshold_is_ruled_out():
    over = claims_over_seeds(observations({("mlp5", 0): 1.09, ("mlp5", 1): 1.08, ("mlp5", 2): 1.01}, "large_exists"))
    row = over.iloc[0]
    assert row["verdict"] == RULED_OUT and row["high"] < 2.0
    assert row["p_ruled_out"] < 0.025 and row["p_ruled_out_holm"] >= row["p_ruled_out"]


def test_over_seeds_a_threshold_claim_holds_only_when_its_interval_lies_beyond_the_threshold():
    lead = {("mlp3", s): x for s, x in enumerate((70.0, 68.0, 73.0))}
    assert claims_over_seeds(observations(lead, "clean_first")).iloc[0]["verdict"] == HOLDS
    # every seed at or above 95% held, but so close that the interval crosses 95%: not shown
    held = {("mlp7", s): x for s, x in enumerate((0.951, 0.99, 0.96))}
    assert claims_over_seeds(observations(held, "noisy_fit")).iloc[0]["verdict"] == INCONCLUSIVE
    # a "below" threshold: layer 4 of 6 in both seeds lies past the shallow half
    deep = claims_over_seeds(observations({("mlp7", 0): 4 / 6, ("mlp7", 1): 4 / 6}, "large_shallow")).iloc[0]
    assert deep["verdict"] == RULED_OUT


def test_over_seeds_a_threshold_claim_whose_seeds_agree_exactly_says_its_interval_has_no_width():
    # both seeds at layer 4 of 6: the interval is the value itself, and the table says why
    deep = claims_over_seeds(observations({("mlp7", 0): 4 / 6, ("mlp7", 1): 4 / 6}, "large_shallow")).iloc[0]
    assert deep["low"] == deep["high"] == pytest.approx(4 / 6)
    assert NO_SPREAD in deep["basis"] and basis_label(deep["basis"]) == "2 seeds, all equal"
    sentence = over_seeds_sentence(claims_over_seeds(observations({("mlp7", 0): 4 / 6, ("mlp7", 1): 4 / 6},
                                                                  "large_shallow")), "large_shallow", ["mlp7"])
    assert sentence.endswith("ruled out (2 seeds, all equal)"), sentence
    spread = claims_over_seeds(observations({("mlp7", 0): 4 / 6, ("mlp7", 1): 5 / 6}, "large_shallow")).iloc[0]
    assert NO_SPREAD not in spread["basis"] and basis_label(spread["basis"]) == "2 seeds"


def test_over_seeds_a_threshold_claim_on_one_seed_keeps_its_value_and_says_it_has_no_interval():
    row = claims_over_seeds(observations({("mlp7", 0): 24.0}, "large_100x")).iloc[0]
    assert row["verdict"] == RULED_OUT and row["basis"] == ONE_VALUE
    assert np.isnan(row["low"]) and row["mean"] == 24.0
