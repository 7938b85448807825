"""Compact reference copies of runs: thinned, half precision, still readable by the analyses."""

import json

import numpy as np
import pandas as pd
import pytest

from ddd_support.analysis.ablation import ablate_neuron, ablation_for, stored_ablation
from ddd_support.analysis.large_activation import correlation_table, large_activation_table
from ddd_support.runs.reader import load_run
from ddd_support.analysis.separation import layer_separation, separation_table
from ddd_support.analysis.claims import claim_counts
from ddd_support.analysis.tables import summary_tables
from ddd_support.errors import CheckpointError, ConfigError, RunDirError
from ddd_support.book.reference import export_reference, thin_epochs, write_reference_index
from ddd_support.book.chapters import reference_runs, runs_for
from ddd_support.train.driver import train

from tests.conftest import tiny_config, write_image_folder


def test_thinning_keeps_first_and_last_and_at_most_the_count():
    epochs = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 13, 16, 20, 25, 32, 40, 50, 63, 79, 100, 120]
    kept = thin_epochs(epochs, 6)
    assert kept[0] == 0 and kept[-1] == 120 and len(kept) <= 6 and set(kept) <= set(epochs)
    assert thin_epochs([0, 5, 9], 6) == [0, 5, 9]


def test_reference_copy_is_smaller_and_reads_as_a_run(tmp_path, trained_run_copy):
    run_dir = trained_run_copy(tmp_path / "runs", epochs=12, base_width=32, top_k=4)
    ref_dir = export_reference(run_dir, tmp_path / "ref", max_snapshots=4, top_k=2, ablation=False)
    size = lambda d: sum(f.stat().st_size for f in d.rglob("*") if f.is_file())  # noqa: E731
    assert size(ref_dir) < size(run_dir) / 4
    assert not list(ref_dir.glob("checkpoint*"))
    run, ref = load_run(run_dir), load_run(ref_dir)
    assert len(ref.snapshot_epochs) == 4 and ref.snapshot_epochs[-1] == 12
    pd.testing.assert_frame_equal(ref.metrics, run.metrics)
    original, compact = run.snapshot(12), ref.snapshot(12)
    assert compact["l1_top_act"].shape[1] == 2 and "l1_mean_clean" not in compact
    assert "l1_mean_noisy_by_noisy" not in compact and "count_clean" not in compact
    for key in ("l2_mean_clean_a", "l2_mean_clean_b", "l2_mean_noisy", "l2_mean_test"):
        np.testing.assert_allclose(compact[key], original[key], rtol=2e-3, atol=1e-3)
    assert "l1_rand_act" in compact and "l1_rand_act" not in ref.snapshot(ref.snapshot_epochs[0])
    assert np.array_equal(ref.test_correct, run.test_correct)


def test_an_unfinished_run_is_not_exported(tmp_path, trained_run_copy):
    run_dir = trained_run_copy(tmp_path / "runs", epochs=3)
    state = json.loads((run_dir / "config.json").read_text())
    state["status"] = "running"
    (run_dir / "config.json").write_text(json.dumps(state))
    with pytest.raises(RunDirError, match="is not complete"):
        export_reference(run_dir, tmp_path / "ref", ablation=False)


def test_analyses_give_the_same_answers_on_the_reference_copy(tmp_path, trained_run_copy):
    run_dir = trained_run_copy(tmp_path / "runs", epochs=6, base_width=32)
    ref = load_run(export_reference(run_dir, tmp_path / "ref", max_snapshots=20, ablation=False))
    run = load_run(run_dir)
    full = layer_separation(separation_table(run))
    compact = layer_separation(separation_table(ref))
    np.testing.assert_allclose(compact["cosine"], full["cosine"], atol=2e-3)
    assert list(large_activation_table(ref)["neuron"]) == list(large_activation_table(run)["neuron"])
    np.testing.assert_allclose(correlation_table(ref)["pearson"], correlation_table(run)["pearson"], atol=1e-2)
    full_tables, ref_tables = summary_tables([run]), summary_tables([ref])
    for name in ("claims", "post_fit", "separation_index"):
        pd.testing.assert_frame_equal(ref_tables[name].drop(columns=["outcome"], errors="ignore"),
                                      full_tables[name].drop(columns=["outcome"], errors="ignore"),
                                      atol=5e-3, check_dtype=False)


def test_export_command_writes_copy_ablation_index_and_tables(tmp_path):
    from ddd_support.cli import main

    data_root = write_image_folder(tmp_path / "images", per_class=4)
    cfg = tiny_config(epochs=4, base_width=16, data_root=str(data_root), probe_per_class=1)
    run_dir = train(cfg, tmp_path / "runs")
    assert main(["export-reference", str(run_dir), "--dest", str(tmp_path / "ref"), "--max-snapshots", "3"]) == 0
    ref = load_run(tmp_path / "ref" / "test" / "mlp3" / "seed0")
    assert len(ref.snapshot_epochs) == 3
    from ddd_support.analysis.ablation import ablation_layer

    stored = ablation_for(ref, layer=ablation_layer(ref))
    assert list(stored["label"][:2]) == ["baseline", "large neuron"] and stored["epoch"].iloc[0] == 4
    assert stored_ablation(ref) is not None
    index = json.loads((tmp_path / "ref" / "reference.json").read_text())
    assert index["profiles"]["test"]["seeds"] == [0]
    assert {"phases.csv", "claims.csv", "claims_over_seeds.csv", "post_fit.csv"} <= set(index["profiles"]["test"]["tables"])


def test_stored_ablation_is_the_checkpoint_s_ablation(tmp_path, synthetic_arrays, trained_run_copy):
    run_dir = trained_run_copy(tmp_path / "runs", epochs=5, base_width=16)
    ref = load_run(export_reference(run_dir, tmp_path / "ref", cifar=synthetic_arrays))
    from ddd_support.analysis.ablation import ablation_layer

    layer = ablation_layer(ref)
    direct = ablate_neuron(load_run(run_dir), layer, arrays=synthetic_arrays)
    stored = ablation_for(ref, layer)
    pd.testing.assert_frame_equal(stored, direct, check_dtype=False)
    assert np.array_equal(stored.attrs["test_correct"], direct.attrs["test_correct"])
    with pytest.raises(CheckpointError, match="mode 'mean'"):
        ablation_for(ref, layer, mode="zero")
    (ref.path / "ablation.csv").unlink()
    with pytest.raises(CheckpointError, match="neither a checkpoint"):
        ablation_for(ref, layer)


def test_index_lists_runs_and_tables_cover_every_seed(tmp_path, trained_run_copy):
    for seed in (0, 1):
        run_dir = trained_run_copy(tmp_path / "runs", seed=seed, epochs=4)
        export_reference(run_dir, tmp_path / "ref", ablation=False)
    index = json.loads(write_reference_index(tmp_path / "ref").read_text())["profiles"]["test"]
    assert index["seeds"] == [0, 1] and len(index["runs"]) == 2
    assert index["produced_by"][1] == "python -m ddd_support train --profile test --seed 1"
    phases = pd.read_csv(tmp_path / "ref" / "test" / "tables" / "phases.csv")
    assert sorted(phases["seed"]) == [0, 1]
    claims = pd.read_csv(tmp_path / "ref" / "test" / "tables" / "claims.csv")
    counts = claim_counts(claims)
    assert counts.shape == (claims["claim"].nunique(), 1)
    assert all(c.endswith("(2 seeds)") or c == "not testable" for c in counts["mlp3"])


def test_runs_for_reads_a_reference_and_never_trains_into_it(tmp_path, trained_run_copy):
    run_dir = trained_run_copy(tmp_path / "runs", epochs=3)
    export_reference(run_dir, tmp_path / "ref", ablation=False)
    write_reference_index(tmp_path / "ref")
    before = sorted(p for p in (tmp_path / "ref").rglob("*"))
    assert runs_for("test", ["mlp3"], [0], None, tmp_path / "ref") == [tmp_path / "ref" / "test" / "mlp3" / "seed0"]
    with pytest.raises(RunDirError, match="no test run of mlp3 seed 4"):
        runs_for("test", ["mlp3"], [0, 4], None, tmp_path / "ref")
    with pytest.raises(ConfigError, match="overrides"):
        runs_for("test", ["mlp3"], [0], {"epochs": 5}, tmp_path / "ref")
    assert sorted(p for p in (tmp_path / "ref").rglob("*")) == before
    assert reference_runs("test", [0], tmp_path / "ref") == [tmp_path / "ref" / "test" / "mlp3" / "seed0"]
    with pytest.raises(RunDirError, match="holds no reference runs"):
        reference_runs("test", [0], tmp_path / "runs")
    assert not (tmp_path / "runs" / "test" / "mlp3" / "seed1").exists()


def test_export_without_a_checkpoint_says_the_ablation_is_missing(tmp_path, trained_run_copy):
    run_dir = trained_run_copy(tmp_path / "runs", epochs=3, checkpoint_every=100)
    for f in run_dir.glob("checkpoint*"):
        f.unlink()
    ref = load_run(export_reference(run_dir, tmp_path / "ref"))
    assert stored_ablation(ref) is None
    state = json.loads((ref.path / "config.json").read_text())
    assert state["reference"]["ablation"] == "not computed: the run has no checkpoint"


def test_an_analysis_chapter_says_so_before_it_trains_missing_runs(tmp_path, monkeypatch, capsys):
    from ddd_support.book import chapters

    monkeypatch.setattr(chapters, "train_profile", lambda *a, **k: [])
    chapters.runs_for("smoke", ["mlp3"], [0, 1], None, run_root=tmp_path)
    assert "no finished smoke run of mlp3 seed 0, mlp3 seed 1: training them now" in capsys.readouterr().out
