"""The claims table: three-valued verdicts per run, their summary over seeds, and the sentences."""

import numpy as np
import pandas as pd
import pytest

from ddd_support.analysis.claims import (CLAIMS, claim_counts, claims_from, claims_over_seeds, first_epoch_at,
                                         over_seeds_sentence, phase_sentence, strongest_correlation,
                                         verdict_phrase)
from ddd_support.analysis.phases import detect_phases
from ddd_support.runs.reader import load_run
from ddd_support.analysis.stats import FAILS, HOLDS, NOT_TESTABLE, VERDICTS
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


def test_every_claim_gets_one_of_the_three_verdicts(trained_claims):
    assert list(trained_claims["claim"]) == list(CLAIMS)
    assert set(trained_claims["verdict"]) <= set(VERDICTS)


def test_clean_data_come_first_in_a_trained_run(trained_claims):
    row = trained_claims.set_index("claim").loc["clean_first"]
    assert row["verdict"] == HOLDS and row["statistic"] > 0


def test_claims_about_a_large_activation_are_not_testable_where_none_exists(trained_claims):
    rows = trained_claims.set_index("claim")
    assert rows.loc["large_exists", "verdict"] == FAILS
    for claim in ("large_shallow", "large_input", "large_needed"):
        assert rows.loc[claim, "verdict"] == NOT_TESTABLE


def claims_table(verdicts: dict[tuple[str, int], str], statistic: float = 0.01) -> pd.DataFrame:
    return pd.DataFrame([{"model": m, "seed": s, "claim": "post_fit_rise", "statement": "",
                          "statistic": statistic if v != NOT_TESTABLE else np.nan, "low": np.nan,
                          "high": np.nan, "outcome": "", "verdict": v} for (m, s), v in verdicts.items()])


def test_over_seeds_a_claim_holds_only_if_it_holds_in_every_testable_seed():
    over = claims_over_seeds(claims_table({("mlp5", 0): HOLDS, ("mlp5", 1): FAILS, ("mlp5", 2): HOLDS,
                                           ("mlp7", 0): HOLDS, ("mlp7", 1): NOT_TESTABLE, ("mlp7", 2): HOLDS,
                                           ("mlp3", 0): NOT_TESTABLE}))
    by_model = over.set_index("model")
    assert by_model.loc["mlp5", "verdict"] == FAILS and by_model.loc["mlp5", "holds"] == 2
    assert by_model.loc["mlp7", "verdict"] == HOLDS and by_model.loc["mlp7", "testable"] == 2
    assert by_model.loc["mlp3", "verdict"] == NOT_TESTABLE


def test_claim_counts_show_the_verdict_and_k_of_n_in_claim_order():
    counts = claim_counts(claims_table({("mlp5", 0): HOLDS, ("mlp5", 1): FAILS, ("mlp3", 0): NOT_TESTABLE}))
    assert list(counts.columns) == ["mlp5", "mlp3"]
    assert counts.loc["post_fit_rise", "mlp5"] == "fails (1/2)"
    assert counts.loc["post_fit_rise", "mlp3"] == NOT_TESTABLE


def test_sentences_over_seeds_give_points_interval_and_counts():
    over = claims_over_seeds(pd.concat([claims_table({("mlp7", 0): HOLDS}, 0.02),
                                        claims_table({("mlp7", 1): HOLDS}, 0.04)]))
    text = over_seeds_sentence(over, "post_fit_rise")
    assert text.startswith("MLP7 +3.0 (95% interval ") and text.endswith("points: holds (holds in 2 of 2 seeds)")
    assert verdict_phrase(over, "post_fit_rise", "mlp7") == "holds (holds in 2 of 2 seeds)"
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
