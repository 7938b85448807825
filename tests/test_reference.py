"""Compact reference copies of runs: thinned, half precision, still readable by the analyses."""

import numpy as np
import pandas as pd

from ddd_support.analysis.large_activation import correlation_table, large_activation_table
from ddd_support.analysis.rundata import load_run
from ddd_support.analysis.separation import layer_separation, separation_table
from ddd_support.reference import export_reference, thin_epochs
from ddd_support.training import train

from .conftest import tiny_config


def test_thinning_keeps_first_and_last_and_at_most_the_count():
    epochs = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 13, 16, 20, 25, 32, 40, 50, 63, 79, 100, 120]
    kept = thin_epochs(epochs, 6)
    assert kept[0] == 0 and kept[-1] == 120 and len(kept) <= 6 and set(kept) <= set(epochs)
    assert thin_epochs([0, 5, 9], 6) == [0, 5, 9]


def test_reference_copy_is_smaller_and_reads_as_a_run(tmp_path, synthetic_arrays):
    run_dir = train(tiny_config(epochs=12, base_width=32, top_k=4), tmp_path / "runs", synthetic_arrays)
    ref_dir = export_reference(run_dir, tmp_path / "ref", max_snapshots=4, top_k=2)
    size = lambda d: sum(f.stat().st_size for f in d.rglob("*") if f.is_file())  # noqa: E731
    assert size(ref_dir) < size(run_dir) / 4
    assert not list(ref_dir.glob("checkpoint*"))
    run, ref = load_run(run_dir), load_run(ref_dir)
    assert len(ref.snapshot_epochs) == 4 and ref.snapshot_epochs[-1] == 12
    pd.testing.assert_frame_equal(ref.metrics, run.metrics)
    original, compact = run.snapshot(12), ref.snapshot(12)
    assert compact["l1_top_act"].shape[1] == 2 and "l1_mean_test" not in compact
    np.testing.assert_allclose(compact["l2_mean_clean"], original["l2_mean_clean"], rtol=2e-3, atol=1e-3)


def test_analyses_give_the_same_answers_on_the_reference_copy(tmp_path, synthetic_arrays):
    run_dir = train(tiny_config(epochs=6, base_width=32), tmp_path / "runs", synthetic_arrays)
    ref = load_run(export_reference(run_dir, tmp_path / "ref", max_snapshots=20))
    run = load_run(run_dir)
    full = layer_separation(separation_table(run))
    compact = layer_separation(separation_table(ref))
    np.testing.assert_allclose(compact["cosine"], full["cosine"], atol=2e-3)
    assert list(large_activation_table(ref)["neuron"]) == list(large_activation_table(run)["neuron"])
    np.testing.assert_allclose(correlation_table(ref)["pearson"], correlation_table(run)["pearson"], atol=1e-2)


def test_export_command_writes_the_compact_copy(tmp_path, synthetic_arrays):
    from ddd_support.cli import main

    run_dir = train(tiny_config(epochs=4, base_width=16), tmp_path / "runs", synthetic_arrays)
    assert main(["export-reference", str(run_dir), "--dest", str(tmp_path / "ref"), "--max-snapshots", "3"]) == 0
    assert len(load_run(tmp_path / "ref" / "test" / "mlp3" / "seed0").snapshot_epochs) == 3
