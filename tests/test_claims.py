"""The paper's findings as yes/no tests, and the one-sentence phase story."""

import numpy as np
import pandas as pd
import pytest

from ddd_support.analysis.claims import describe_phases, evaluate_claims, first_epoch_at, strongest_correlation
from ddd_support.analysis.phases import detect_phases
from ddd_support.analysis.rundata import load_run
from ddd_support.training import train

from .conftest import tiny_config


def test_first_epoch_at_finds_the_first_crossing_or_none():
    m = pd.DataFrame({"epoch": [0, 1, 2, 3], "clean_acc": [0.1, 0.4, 0.6, 0.9]})
    assert first_epoch_at(m, "clean_acc", 0.5) == 2
    assert first_epoch_at(m, "clean_acc", 0.95) is None


def test_strongest_correlation_ignores_the_neurons_own_pre_activation():
    corr = pd.DataFrame({"quantity": ["pre-activation", "brightness", "logit margin"],
                         "kind": ["input", "input", "output"], "pearson": [0.99, -0.4, 0.2]})
    assert strongest_correlation(corr, "input") == pytest.approx(0.4)
    assert strongest_correlation(corr, "output") == pytest.approx(0.2)


def test_claims_of_a_trained_run_are_booleans_and_the_clean_data_come_first(tmp_path, synthetic_arrays):
    run = load_run(train(tiny_config(epochs=12, base_width=32), tmp_path, synthetic_arrays))
    verdicts = evaluate_claims(run)
    assert len(verdicts) == 8 and all(isinstance(v, bool) for v in verdicts.values())
    assert verdicts["clean learned before noisy (50% reached)"]


def test_phase_story_names_peak_dip_and_recovery():
    epochs = np.arange(0, 201)
    test = np.interp(epochs, [0, 10, 50, 200], [0.1, 0.5, 0.35, 0.55])
    noisy = np.interp(epochs, [0, 10, 40, 200], [0.1, 0.2, 1.0, 1.0])
    m = pd.DataFrame({"epoch": epochs, "clean_acc": 1.0, "noisy_acc": noisy, "noisy_true_acc": 0.1,
                      "test_acc": test, "test_loss": 2.0})
    story = describe_phases("mlp7", detect_phases(m, n_test=10000))
    assert story.startswith("MLP7 peaks at epoch 10 (50.0%) and dips to 35.0% at epoch 50")
    assert "recovers to 55.0% at epoch 200" in story


def test_claim_counts_are_seeds_passing_per_model_in_claim_order():
    import pandas as pd

    from ddd_support.analysis.tables import claim_counts

    claims = pd.DataFrame({"model": ["mlp3", "mlp3", "mlp3", "mlp3", "mlp7", "mlp7"],
                           "seed": [0, 0, 1, 1, 0, 0],
                           "claim": ["b", "a", "b", "a", "b", "a"],
                           "holds": [True, False, True, True, False, False]})
    counts = claim_counts(claims)
    assert list(counts.index) == ["b", "a"] and list(counts.columns) == ["mlp3", "mlp7"]
    assert counts.loc["b", "mlp3"] == "2/2" and counts.loc["a", "mlp3"] == "1/2"
    assert counts.loc["a", "mlp7"] == "0/1"


def test_over_seed_sentences_carry_the_means_and_counts():
    import pandas as pd

    from ddd_support.analysis.claims import (large_activation_over_seeds, phases_over_seeds,
                                             separation_over_seeds)

    phases = pd.DataFrame({"model": ["mlp7", "mlp7"], "test_peak_acc": [0.5, 0.4], "test_peak_epoch": [7, 9],
                           "test_dip_acc": [0.3, 0.3], "noisy_fit_end_epoch": [50, None],
                           "regen_gain": [0.02, 0.0], "final_test_acc": [0.35, 0.33]})
    text = phases_over_seeds(phases, n_test=2000)
    assert text.startswith("MLP7 peaks at 45.0% (epoch 8), dips to 30.0%, fits 99% of the noisy labels "
                           "in 1 of 2 seed(s), gains +1.0% after the fit and ends at 34.0%")
    assert "2,000 test images a change under 2.9%" in text
    sep = pd.DataFrame({"model": ["mlp5"] * 4, "seed": [0, 0, 1, 1], "layer": [1, 4, 1, 4],
                        "change": [0.0, -0.2, 0.02, -0.4]})
    assert separation_over_seeds(sep) == "MLP5 +0.010 in layer 1, -0.300 in layer 4"
    large = pd.DataFrame({"model": ["mlp3", "mlp3"], "ratio": [9.6, 14.2], "largest_layer": [1, 2],
                          "layers": [2, 2], "input_r": [0.8, 0.6], "output_r": [0.2, 0.3]})
    assert large_activation_over_seeds(large) == "MLP3 10x to 14x (layer 1, 2 of 2; input |r| 0.70 vs output |r| 0.25)"
    assert large_activation_over_seeds(large.iloc[:1]).startswith("MLP3 10x (layer 1 of 2;")
    assert "(one seed;" in phases_over_seeds(phases.iloc[:1], n_test=2000)
