"""The scale map: runs placed on its axes, findings per cell, the time axis, the sentences."""

import numpy as np
import pandas as pd
import pytest

from ddd_support.analysis.stats import HOLDS, NOT_TESTABLE, RULED_OUT
from ddd_support.sweeps.scale_map import (activation_by_length, axis_moves, axis_sentence, cells_sentence,
                                          finding_cells, length_cells, run_axes)
from ddd_support.sweeps.spec import SweepSpec

SPEC = SweepSpec.from_dict({
    "name": "map", "profile": "cpu_mlp7", "grid": {"seed": [0, 1, 2]},
    "points": [{}, {"batch_size": 256, "seed": 0}, {"batch_size": 256, "seed": 1},
               {"model": "mlp5", "base_width": 256, "seed": 0}, {"n_train": 2500, "lr": 3e-4, "seed": 0},
               {"epochs": 300, "seed": 1}]})


def test_each_run_is_placed_on_the_one_axis_where_it_leaves_the_base():
    axes = run_axes(SPEC)
    where = axes.drop_duplicates("point").set_index("point")["axis"].to_dict()
    assert where == {"base": "base", "batch_size=256": "batch_size", "base_width=256": "depth",
                     "n_train=2500,lr=0.0003": "several", "epochs=300": "epochs"}
    mlp5 = axes[axes["point"] == "base_width=256"].iloc[0]
    assert (mlp5["width"], mlp5["depth"]) == (512, 4)   # the same width as the base's MLP7, fewer layers
    assert len(axes[axes["point"] == "base"]) == 3 and len(axes) == 8


def test_a_spec_without_a_base_point_cannot_be_mapped():
    spec = SweepSpec.from_dict({"name": "m", "profile": "cpu_mlp7", "points": [{"lr": 1e-3}, {"lr": 3e-4}]})
    with pytest.raises(ValueError, match="no base point"):
        run_axes(spec)


def _claims(rows: list[tuple[str, int, float, float, float, str]], claim: str = "large_exists") -> pd.DataFrame:
    return pd.DataFrame([{"point": p, "model": "mlp5" if p == "base_width=256" else "mlp7", "seed": s,
                          "claim": claim, "statistic": x, "low": lo, "high": hi, "outcome": "", "verdict": v}
                         for p, s, x, lo, hi, v in rows])


PLANTED = _claims([("base", 0, 2.9, np.nan, np.nan, HOLDS), ("base", 1, 2.5, np.nan, np.nan, HOLDS),
                   ("base", 2, 1.6, np.nan, np.nan, RULED_OUT),
                   ("batch_size=256", 0, 1.2, np.nan, np.nan, RULED_OUT),
                   ("batch_size=256", 1, 1.4, np.nan, np.nan, RULED_OUT),
                   ("base_width=256", 0, 2.2, np.nan, np.nan, HOLDS),
                   ("epochs=300", 1, 4.0, np.nan, np.nan, HOLDS)])


def test_a_cell_counts_its_seeds_and_gives_the_seed_interval_of_its_statistic():
    cells = finding_cells(PLANTED, run_axes(SPEC), "large_exists").set_index("point")
    base = cells.loc["base"]
    assert (base["runs"], base["testable"], base["holds"]) == (3, 3, 2)
    assert base["mean"] == pytest.approx(7.0 / 3)
    half = 4.302653 * np.std([2.9, 2.5, 1.6], ddof=1) / np.sqrt(3)   # t(0.975, 2)
    assert (base["low"], base["high"]) == pytest.approx((7 / 3 - half, 7 / 3 + half), rel=1e-5)
    assert cells.loc["batch_size=256", "holds"] == 0 and cells.loc["batch_size=256", "value"] == 256
    assert "n_train=2500,lr=0.0003" not in cells.index          # no run of it in the table


def test_one_testable_seed_keeps_its_own_interval_and_untestable_seeds_are_not_counted():
    claims = _claims([("base", 0, 0.02, 0.01, 0.03, HOLDS), ("base", 1, np.nan, np.nan, np.nan, NOT_TESTABLE)],
                     claim="post_fit_rise")
    base = finding_cells(claims, run_axes(SPEC), "post_fit_rise").iloc[0]
    assert (base["testable"], base["holds"], base["low"], base["high"]) == (1, 1, 0.01, 0.03)


def test_an_axis_moves_a_finding_when_the_share_of_seeds_changes_by_half():
    cells = finding_cells(PLANTED, run_axes(SPEC), "large_exists")
    assert axis_moves(cells) == {"batch_size": True, "depth": False, "epochs": False}   # 2/3 -> 0/2, 1/1, 1/1
    assert axis_sentence(cells) == "moved by batch size; not moved by hidden layers, epochs"


def test_sentences_name_every_cell_with_its_counts_and_interval():
    cells = finding_cells(PLANTED, run_axes(SPEC), "large_exists")
    text = cells_sentence(cells)
    assert text.startswith("base: 2 of 3 (2.33 [")
    assert "batch size 256: 0 of 2 (1.30 [" in text and "hidden layers 4: 1 of 1 (2.20)" in text
    untestable = finding_cells(_claims([("base", 0, np.nan, np.nan, np.nan, NOT_TESTABLE)]), run_axes(SPEC),
                               "large_exists")
    assert cells_sentence(untestable) == "base: not testable"
    assert axis_sentence(untestable).startswith("not testable at the base point")


def _activation(point: str, seed: int, epochs: list[int], growth: list[float], dominance: list[float],
                model: str = "mlp7") -> pd.DataFrame:
    rows = []
    for e, g, d in zip(epochs, growth, dominance):
        rows.append({"point": point, "model": model, "seed": seed, "epoch": e, "layer": 4, "ratio": 4 * g,
                     "neuron": 7, "dominance": d, "growth": g})
        rows.append({"point": point, "model": model, "seed": seed, "epoch": e, "layer": 2, "ratio": 3.0,
                     "neuron": 1, "dominance": 0.2, "growth": 1.0})
    return pd.DataFrame(rows)


def test_the_time_axis_reads_the_last_snapshot_up_to_each_length():
    activation = pd.concat([
        _activation("epochs=300", 1, [0, 40, 50, 126, 251, 300], [1.0, 1.5, 1.6, 1.9, 2.5, 3.0],
                    [0.1, 0.6, 0.7, 0.9, 1.0, 1.0]),
        _activation("base", 0, [0, 50, 100, 150], [1.0, 1.2, 2.1, 2.4], [0.1, 0.4, 0.6, 0.9])])
    by = activation_by_length(activation, run_axes(SPEC)).set_index(["point", "length"])
    assert list(by.loc["epochs=300"].index) == [50, 100, 150, 300]
    assert by.loc[("epochs=300", 100), "epoch"] == 50 and by.loc[("epochs=300", 150), "epoch"] == 126
    assert by.loc[("epochs=300", 150), "verdict"] == RULED_OUT and by.loc[("epochs=300", 300), "verdict"] == HOLDS
    assert by.loc[("base", 100), "layer"] == 4 and by.loc[("base", 100), "growth"] == 2.1
    assert 300 not in by.loc["base"].index                      # a 150-epoch run says nothing about 300
    cells = length_cells(activation_by_length(activation, run_axes(SPEC)))
    assert list(cells.loc[cells["point"] == "base", "holds"]) == [0, 1, 1]


def test_a_run_of_another_model_in_the_base_point_is_placed_on_the_depth_axis():
    spec = SweepSpec.from_dict({"name": "m", "profile": "cpu_mlp7", "grid": {"model": ["mlp7", "mlp5"]},
                                "points": [{}, {"lr": 3e-4}]})
    axes = run_axes(spec).set_index(["point", "model"])["axis"]
    assert axes.to_dict() == {("base", "mlp7"): "base", ("base", "mlp5"): "several",
                              ("lr=0.0003", "mlp7"): "lr", ("lr=0.0003", "mlp5"): "several"}


def test_each_runs_activation_cell_reads_its_own_full_length_and_the_chosen_statistic():
    from ddd_support.sweeps.scale_map import activation_runs, cells_of

    activation = pd.concat([
        _activation("epochs=300", 1, [0, 150, 300], [1.0, 1.6, 3.0], [0.1, 0.7, 1.0]),
        _activation("base", 0, [0, 150], [1.0, 2.4], [0.1, 0.9]),
        _activation("base", 1, [0, 150], [1.0, 1.5], [0.1, 0.98])])
    runs = activation_runs(activation_by_length(activation, run_axes(SPEC)), "dominance")
    assert sorted(zip(runs["point"], runs["length"], runs["statistic"])) == [
        ("base", 150, 0.9), ("base", 150, 0.98), ("epochs=300", 300, 1.0)]
    base = cells_of(runs, "point", "model").set_index("point").loc["base"]
    assert (base["holds"], base["testable"], base["mean"]) == (1, 2, pytest.approx(0.94))


def test_the_grid_overview_gives_each_cell_its_seeds_cost_and_accuracy():
    from ddd_support.sweeps.scale_map import grid_overview

    table = pd.DataFrame({"point": ["base", "base", "batch_size=256"], "model": "mlp7", "seed": [0, 1, 0],
                          "train_seconds": [240.0, 300.0, 100.0], "eval_seconds": [60.0, 0.0, 20.0],
                          "final_test_acc": [0.3, 0.4, 0.2]})
    view = grid_overview(run_axes(SPEC), table).set_index("point")
    assert list(view.index) == ["base", "batch_size=256"]
    assert view.loc["base", "seeds"] == "0, 1" and view.loc["base", "minutes_per_run"] == 5.0
    assert view.loc["base", "final_test_acc"] == pytest.approx(0.35)
    assert (view.loc["batch_size=256", "axis"], view.loc["batch_size=256", "value"]) == ("batch_size", 256)


def test_a_run_shorter_than_every_length_is_read_at_its_end():
    activation = _activation("base", 0, [0, 20, 40], [1.0, 1.5, 2.2], [0.1, 0.5, 0.8])
    by = activation_by_length(activation, run_axes(SPEC))
    assert list(by["length"]) == [40] and list(by["verdict"]) == [HOLDS]


@pytest.mark.slow
def test_a_sweep_writes_and_exports_the_tables_the_map_reads(tmp_path, sweep_scheduler):
    import json

    from ddd_support.analysis.claims import CLAIMS
    from ddd_support.files import read_json
    from ddd_support.sweeps.results import read_detail_tables, read_sweep
    from tests.sweeps.conftest import sweep_here

    spec = tmp_path / "map.yaml"
    spec.write_text(json.dumps({"name": "map", "profile": "smoke", "grid": {"model": ["mlp3"]},
                                "set": {"n_train": 60, "n_test": 40, "epochs": 4, "probe_per_class": 1},
                                "points": [{}, {"batch_size": 16}]}))
    proc = sweep_here(["-q", "sweep", str(spec), "--out", str(tmp_path / "out"), "--scheduler", sweep_scheduler,
                       "--export", str(tmp_path / "ref")])
    assert proc.returncode == 0, proc.stderr[-2000:]
    claims, activation = read_detail_tables(tmp_path / "ref" / "map")
    assert sorted(set(claims["point"])) == ["base", "batch_size=16"] and len(claims) == 2 * len(CLAIMS)
    run_dir = tmp_path / "out" / "map" / "base" / "smoke" / "mlp3" / "seed0"
    snapshots = read_json(run_dir / "config.json")["snapshot_epochs"]
    base = activation[activation["point"] == "base"]
    assert sorted(set(base["epoch"])) == snapshots and set(base["layer"]) == {1, 2}
    _, table, _, _ = read_sweep(tmp_path / "ref" / "map")
    exists = claims.set_index(["point", "claim"])["verdict"].xs("large_exists", level="claim")
    assert (table.set_index("point")["claim_large_exists"] == exists).all()   # the same verdicts as sweep.csv


def test_a_sweep_folder_without_the_map_tables_says_how_to_write_them(tmp_path):
    from ddd_support.errors import RunDirError
    from ddd_support.sweeps.results import read_detail_tables

    with pytest.raises(RunDirError, match="run its sweep command again"):
        read_detail_tables(tmp_path)


def test_a_point_that_changes_a_value_off_the_map_is_on_no_axis():
    spec = SweepSpec.from_dict({"name": "m", "profile": "cpu_mlp7", "points": [{}, {"noise_rate": 0.1}]})
    assert list(run_axes(spec)["axis"]) == ["base", "several"]


def test_the_time_axis_in_words_lists_each_cells_lengths_in_order():
    from ddd_support.sweeps.scale_map import length_sentence

    activation = pd.concat([_activation("base", 0, [0, 50, 100, 150], [1.0, 1.2, 2.1, 2.4], [0.1, 0.4, 0.6, 0.9]),
                            _activation("epochs=300", 1, [0, 50, 300], [1.0, 1.1, 3.0], [0.1, 0.3, 1.0])])
    text = length_sentence(length_cells(activation_by_length(activation, run_axes(SPEC))))
    assert text == ("base: epoch 50 0 of 1 (1.20x), epoch 100 1 of 1 (2.10x), epoch 150 1 of 1 (2.40x); "
                    "epochs 300: epoch 50 0 of 1 (1.10x), epoch 100 0 of 1 (1.10x), epoch 150 0 of 1 (1.10x), "
                    "epoch 300 1 of 1 (3.00x)")


def test_the_profile_criterion_names_the_cells_that_meet_it_or_says_none_does():
    from ddd_support.sweeps.scale_map import profile_sentence

    cells = finding_cells(PLANTED, run_axes(SPEC), "large_exists")
    assert profile_sentence(cells) == "it holds in at least 2 seeds at base (2 of 3)"
    assert profile_sentence(cells, at_least=3) == (
        "no cell of the map shows it in 3 seeds or more; it holds in "
        "fewer at base (2 of 3), hidden layers 4 (1 of 1), epochs 300 (1 of 1)")
    none = cells.assign(holds=0)
    assert profile_sentence(none) == "no cell of the map shows it in 2 seeds or more, nor in any seed at all"
