"""Loading run directories (with clear errors for broken ones), the text report and the CLI."""

import json
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from ddd_support.book.report import analyze  # noqa: E402
from ddd_support.runs.reader import find_runs, load_run, load_runs  # noqa: E402
from ddd_support.cli import main  # noqa: E402
from ddd_support.config import TrainConfig  # noqa: E402
from ddd_support.data.cifar import CifarArrays  # noqa: E402
from ddd_support.errors import RunDirError  # noqa: E402
from ddd_support.train.driver import train  # noqa: E402

EPOCHS = 4


def random_arrays(n_train: int = 200, n_test: int = 100) -> CifarArrays:
    rng = np.random.default_rng(0)
    return CifarArrays(rng.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8), np.arange(n_train) % 10,
                       rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8), np.arange(n_test) % 10,
                       source="synthetic")


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory) -> Path:
    """Two tiny trained runs (mlp3 seed 0, mlp5 seed 1) under root/test/<model>/seed<N>."""
    root = tmp_path_factory.mktemp("runs")
    arrays = random_arrays()
    for model, seed in (("mlp5", 1), ("mlp3", 0)):
        cfg = TrainConfig(profile="test", model=model, seed=seed, hidden_widths=(16, 16), epochs=EPOCHS,
                          batch_size=50, lr=1e-3, probe_per_class=2, top_k=3, snapshot_dense_until=1,
                          snapshot_per_decade=2, progress=False, device="cpu")
        train(cfg, root, arrays=arrays)
    return root


@pytest.fixture
def run_copy(runs_root, tmp_path) -> Path:
    """A private copy of the mlp3 run that a test may damage."""
    return Path(shutil.copytree(runs_root / "test" / "mlp3" / "seed0", tmp_path / "seed0"))


def test_load_run_reads_every_part_of_a_run_directory(runs_root):
    run = load_run(runs_root / "test" / "mlp3" / "seed0")
    assert (run.model, run.seed, run.n_layers, run.status) == ("mlp3", 0, 2, "complete")
    assert list(run.metrics["epoch"]) == list(range(EPOCHS + 1))
    assert run.snapshot_epochs[0] == 0 and run.snapshot_epochs[-1] == EPOCHS
    assert run.snapshot(EPOCHS)["l1_absmax"].shape == (16,)
    assert set(run.labels) >= {"original", "noisy", "noisy_mask"} and "brightness" in run.probe


def test_find_runs_lists_run_directories_sorted_by_model(runs_root):
    assert [p.parts[-2:] for p in find_runs(runs_root)] == [("mlp3", "seed0"), ("mlp5", "seed1")]


def test_find_runs_filters_by_model_and_profile(runs_root):
    assert [p.parts[-2] for p in find_runs(runs_root, model="mlp5")] == ["mlp5"]
    assert find_runs(runs_root, profile="paper") == []


def test_load_runs_keeps_the_order_given(runs_root):
    runs = load_runs(reversed(find_runs(runs_root)))
    assert [r.model for r in runs] == ["mlp5", "mlp3"]


def test_snapshot_of_an_unrecorded_epoch_names_the_recorded_ones(run_copy):
    with pytest.raises(RunDirError, match=r"no snapshot of epoch 2; snapshots exist for epochs \[0, 1, 3, 4\]"):
        load_run(run_copy).snapshot(2)


def test_directory_without_config_is_not_a_run_directory(tmp_path):
    with pytest.raises(RunDirError, match="has no config.json"):
        load_run(tmp_path)


def test_wrong_schema_version_is_named(run_copy):
    state = json.loads((run_copy / "config.json").read_text())
    state["schema_version"] = 99
    (run_copy / "config.json").write_text(json.dumps(state))
    with pytest.raises(RunDirError, match="schema_version 99"):
        load_run(run_copy)


def test_missing_metrics_columns_are_named(run_copy):
    path = run_copy / "metrics.csv"
    pd.read_csv(path).drop(columns=["noisy_true_acc", "test_loss"]).to_csv(path, index=False)
    with pytest.raises(RunDirError, match=r"lacks the columns \['noisy_true_acc', 'test_loss'\]"):
        load_run(run_copy)


def test_missing_epochs_are_named(run_copy):
    path = run_copy / "metrics.csv"
    m = pd.read_csv(path)
    m[~m["epoch"].isin([1, 2])].to_csv(path, index=False)
    with pytest.raises(RunDirError, match=f"missing epochs 1-2 of 0..{EPOCHS}"):
        load_run(run_copy)


def test_complete_run_missing_its_last_epochs_is_caught(run_copy):
    path = run_copy / "metrics.csv"
    m = pd.read_csv(path)
    m[m["epoch"] < EPOCHS].to_csv(path, index=False)
    with pytest.raises(RunDirError, match=f"missing epochs {EPOCHS} of"):
        load_run(run_copy)


def test_run_without_snapshots_is_refused(run_copy):
    shutil.rmtree(run_copy / "snapshots")
    with pytest.raises(RunDirError, match="has no activation snapshots"):
        load_run(run_copy)


def test_missing_probe_file_is_named(run_copy):
    (run_copy / "probe.npz").unlink()
    with pytest.raises(RunDirError, match="has no probe.npz"):
        load_run(run_copy)


def test_report_holds_the_three_summaries(runs_root):
    text = analyze(runs_root / "test" / "mlp3" / "seed0", write_figures=False)
    for heading in ("Verdicts", "Phases", "Separation index", "Large activation", "Correlations of layer"):
        assert heading in text
    assert "test_dip_epoch" in text and "brightness" in text and "emergence" in text
    assert "post_fit_rise" in text and "not testable" in text


def test_report_writes_its_figures_as_png(run_copy):
    text = analyze(run_copy)
    pngs = sorted(p.name for p in (run_copy / "figures").glob("*.png"))
    assert {"four_way_acc.png", "separation_heatmap.png", "large_activation.png",
            "correlations.png", "noise_transition.png"} <= set(pngs)
    assert all((run_copy / "figures" / p).read_bytes()[:4] == b"\x89PNG" for p in pngs)
    assert str(run_copy / "figures" / "correlations.png") in text


def test_cli_analyze_prints_the_report(runs_root, capsys):
    assert main(["analyze", "--no-figures", str(runs_root / "test" / "mlp5" / "seed1")]) == 0
    assert "MLP5 seed 1" in capsys.readouterr().out


def test_cli_analyze_bad_directory_gives_one_error_line_and_exit_1(tmp_path, capsys):
    assert main(["analyze", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error: ")]
    assert len(errors) == 1 and "config.json" in errors[0] and not any("Traceback" in line for line in err)
