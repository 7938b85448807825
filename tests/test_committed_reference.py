"""The committed reference runs: what they are, that their tables match them, and that they
support what the book's conclusions chapter says about them in words."""

import json

import numpy as np
import pandas as pd
import pytest

from ddd_support.analysis import find_runs, load_runs
from ddd_support.analysis.tables import summary_tables
from ddd_support.config import PROFILES
from ddd_support.reference import REFERENCE_INDEX, REFERENCE_ROOT

pytestmark = pytest.mark.skipif(not (REFERENCE_ROOT / REFERENCE_INDEX).is_file(),
                                reason="no committed reference runs")
TABLES = ("phases", "separation", "large_activation", "claims")
RECOVERS = "test accuracy recovers after the noisy fit (double descent)"


@pytest.fixture(scope="module")
def index() -> dict:
    return json.loads((REFERENCE_ROOT / REFERENCE_INDEX).read_text())["profiles"]


@pytest.fixture(scope="module")
def tables() -> dict[str, dict[str, pd.DataFrame]]:
    return {p: {name: pd.read_csv(REFERENCE_ROOT / p / "tables" / f"{name}.csv") for name in TABLES}
            for p in ("cpu", "paper")}


def test_cpu_reference_is_exactly_the_cpu_profile_for_three_seeds(index):
    cpu = index["cpu"]
    assert cpu["seeds"] == [0, 1, 2] and cpu["models"] == ["mlp3", "mlp5", "mlp7"]
    assert cpu["overrides"] == []
    runs = load_runs(find_runs(REFERENCE_ROOT, profile="cpu"))
    assert len(runs) == 9
    expected = PROFILES["cpu"].config("mlp3").epochs
    for run in runs:
        assert run.status == "complete" and int(run.metrics["epoch"].max()) == expected
        assert "reference" in json.loads((run.path / "config.json").read_text())
        assert (run.path / "ablation.csv").is_file()
        assert not list(run.path.glob("checkpoint*"))


def test_reference_is_small(index):
    size = sum(f.stat().st_size for f in REFERENCE_ROOT.rglob("*") if f.is_file())
    assert size < 12 * 2 ** 20


@pytest.mark.parametrize("profile", ["cpu", "paper"])
def test_committed_tables_are_what_the_runs_give(profile, tables):
    recomputed = summary_tables(load_runs(find_runs(REFERENCE_ROOT, profile=profile)))
    for name in TABLES:
        stored, fresh = tables[profile][name], recomputed[name]
        assert list(stored.columns) == list(fresh.columns), name
        for col in stored.columns:
            if pd.api.types.is_numeric_dtype(stored[col]) and pd.api.types.is_numeric_dtype(fresh[col]):
                np.testing.assert_allclose(stored[col].astype(float), fresh[col].astype(float),
                                           rtol=1e-4, atol=1e-6, err_msg=f"{name}.{col}")
            else:
                assert list(stored[col].astype(str)) == list(fresh[col].astype(str)), f"{name}.{col}"


# What chapter 06 says of the reference, checked against the reference ---------------------

def test_cpu_runs_peak_dip_and_recover_at_most_borderline(tables):
    phases, claims = tables["cpu"]["phases"], tables["cpu"]["claims"]
    assert phases["test_dip_epoch"].notna().all()
    assert (phases["test_peak_acc"] > phases["test_dip_acc"]).all()
    mlp3 = phases[phases["model"] == "mlp3"]
    assert mlp3["noisy_fit_end_epoch"].isna().all()                # "MLP3 never fits its noisy labels"
    recovers = claims[claims["claim"] == RECOVERS].set_index(["model", "seed"])["holds"]
    assert recovers.sum() == 1 and recovers.xs("mlp7").sum() == 1  # "in one seed of three"
    mlp7 = phases[phases["model"] == "mlp7"]
    assert mlp7["regen_gain"].between(0.02, 0.035).all()           # "two to three points"
    floor = 2 * np.sqrt(2 * mlp7["test_dip_acc"] * (1 - mlp7["test_dip_acc"]) / 2000)
    assert (abs(mlp7["regen_gain"] - floor) < 0.01).all()         # "about the sampling noise"


def test_paper_run_recovers_a_little_after_the_fit_but_stays_below_its_peak(tables):
    phases = tables["paper"]["phases"]
    assert phases["regeneralizes"].all() and phases["noisy_fit_end_epoch"].notna().all()
    assert (phases["regen_gain"] < (phases["test_peak_acc"] - phases["test_dip_acc"]) / 2).all()
    assert (phases["final_test_acc"] < phases["test_peak_acc"]).all()


@pytest.mark.parametrize("profile", ["cpu", "paper"])
def test_the_last_layer_separates_more_than_the_first_and_more_in_bigger_models(profile, tables):
    sep = tables[profile]["separation"]
    ends = sep.sort_values("layer").groupby(["model", "seed"])["change"].agg(["first", "last"])
    assert (ends["first"].abs() < 0.05).all()  # "the first layer barely separates the two groups"
    deeper = ends.drop(index="mlp3", level="model")
    assert (deeper["last"] < deeper["first"] - 0.03).all()
    deepest = ends.groupby(level="model")["last"].mean()
    assert deepest["mlp7"] < deepest["mlp5"] < deepest["mlp3"]
    if profile == "cpu":  # "MLP3 on the CPU hardly separates them at all"
        assert (sep[sep["model"] == "mlp3"]["change"].abs() < 0.02).all()


def test_no_run_has_a_very_large_activation(tables):
    for profile in ("cpu", "paper"):
        assert (tables[profile]["large_activation"]["ratio"] < 100).all()
    assert (tables["cpu"]["large_activation"]["same_neuron_fraction"] <= 0.5).mean() > 0.5


def test_paper_ratio_grows_with_the_model_and_mlp7_s_sits_in_a_middle_layer(tables):
    large = tables["paper"]["large_activation"].set_index("model")
    assert large.loc["mlp3", "ratio"] < large.loc["mlp5", "ratio"] < large.loc["mlp7", "ratio"]
    assert large.loc["mlp7", "ratio"] == pytest.approx(94, abs=1)
    assert large.loc["mlp7", "largest_layer"] > large.loc["mlp7", "layers"] / 2
    assert large.loc["mlp7", "ratio"] >= 0.999 * large.loc["mlp7", "peak_ratio"]  # still growing at the end


def test_image_statistics_beat_outputs_in_most_runs_but_not_in_two_cpu_mlp7_runs(tables):
    large = pd.concat([tables[p]["large_activation"] for p in ("cpu", "paper")])
    wins = large["input_r"] > large["output_r"]
    assert wins.mean() > 0.5
    cpu7 = tables["cpu"]["large_activation"].query("model == 'mlp7'")
    assert (cpu7["input_r"] <= cpu7["output_r"]).sum() == 2


def test_paper_mlp3_recovery_passes_the_noise_test_only_just(tables):
    mlp3 = tables["paper"]["phases"].set_index("model").loc["mlp3"]
    floor = 2 * np.sqrt(2 * mlp3["test_dip_acc"] * (1 - mlp3["test_dip_acc"]) / 10000)
    assert floor < mlp3["regen_gain"] < floor + 0.005


def test_paper_mlp7_s_large_layer_separates_least_of_its_deep_layers_and_changes_neuron():
    from ddd_support.analysis.large_activation import large_activation_table

    sep = pd.read_csv(REFERENCE_ROOT / "paper" / "tables" / "separation.csv").query("model == 'mlp7'")
    change = sep.set_index("layer")["change"]
    large = pd.read_csv(REFERENCE_ROOT / "paper" / "tables" / "large_activation.csv").set_index("model")
    assert large.loc["mlp7", "largest_layer"] == 4
    assert change[4] > change[2] and change[4] > change[3]       # "layer 4 separates less than layers 2 and 3"
    assert large.loc["mlp7", "same_neuron_fraction"] <= 0.2 + 1e-9  # "a different one at every snapshot"
    run = load_runs(find_runs(REFERENCE_ROOT / "paper" / "mlp7"))[0]
    t = large_activation_table(run).query("layer == 4").set_index("epoch")["ratio"]
    assert t[50] == pytest.approx(31, abs=1)                        # "about 31x at epoch 50"


def test_paper_runs_carry_no_ablation_and_say_so():
    for run in load_runs(find_runs(REFERENCE_ROOT, profile="paper")):
        state = json.loads((run.path / "config.json").read_text())
        assert state["reference"]["ablation"] == "not computed: the run has no checkpoint"
        assert not (run.path / "ablation.csv").exists()
