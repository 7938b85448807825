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
