import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest
import torch

from ddd_support.runs import checkpoints
from ddd_support.config import TrainConfig, snapshot_epochs
from ddd_support.errors import CheckpointError, RunDirError, TrainingDiverged
from ddd_support.models import model_from_config
from ddd_support.runs.checkpoints import load_checkpoint
from ddd_support.runs.schema import METRIC_COLUMNS, TIMING_COLUMNS
from ddd_support.train.driver import prepare_data, train

from tests.conftest import REPO, interrupt_after_checkpoint, tiny_config

DETERMINISTIC = [c for c in METRIC_COLUMNS if c not in TIMING_COLUMNS]


def metrics(run_dir) -> pd.DataFrame:
    return pd.read_csv(run_dir / "metrics.csv")




def test_one_metrics_row_per_epoch_with_every_split(finished_run, synthetic_arrays):
    run = finished_run
    m = metrics(run)
    assert list(m.columns) == list(METRIC_COLUMNS)
    assert list(m["epoch"]) == list(range(7))
    accs = m[[f"{s}_acc" for s in ("clean", "noisy", "noisy_true", "test")]]
    assert accs.notna().all().all() and ((accs >= 0) & (accs <= 1)).all().all()


def test_split_metrics_match_a_direct_evaluation_of_the_final_model(finished_run, synthetic_arrays):
    cfg = tiny_config()
    run = finished_run
    model = model_from_config(cfg)
    model.load_state_dict(load_checkpoint(run)["model"])
    d = prepare_data(cfg, synthetic_arrays, torch.device("cpu"))
    with torch.no_grad():
        pred_train, pred_test = model(d.x_train).argmax(1), model(d.x_test).argmax(1)
    mask = d.noisy_mask
    expected = {
        "clean_acc": (pred_train[~mask] == d.y_true[~mask]).double().mean().item(),
        "noisy_acc": (pred_train[mask] == d.y_noisy[mask]).double().mean().item(),
        "noisy_true_acc": (pred_train[mask] == d.y_true[mask]).double().mean().item(),
        "test_acc": (pred_test == d.y_test).double().mean().item(),
    }
    last = metrics(run).iloc[-1]
    for key, value in expected.items():
        assert last[key] == pytest.approx(value), key
    assert mask.sum().item() == round(0.3 * len(mask))


def test_training_loss_goes_down_and_clean_data_are_learned(trained_run):
    m = metrics(trained_run(epochs=10))
    assert m["train_loss"].iloc[-1] < 0.7 * m["train_loss"].iloc[1]
    assert m["clean_acc"].iloc[-1] > 0.9 > m["clean_acc"].iloc[0]


def test_snapshots_are_taken_on_the_schedule(trained_run):
    cfg = tiny_config(epochs=12)
    run = trained_run(epochs=12)
    taken = sorted(int(p.stem.split("_")[1]) for p in (run / "snapshots").glob("*.npz"))
    assert taken == snapshot_epochs(12, cfg.snapshot_dense_until, cfg.snapshot_per_decade)
    assert json.loads((run / "config.json").read_text())["snapshot_epochs"] == taken


def test_snapshot_holds_class_means_over_all_images_and_per_image_probe_statistics(finished_run, synthetic_arrays):
    cfg = tiny_config()
    run = finished_run
    d = prepare_data(cfg, synthetic_arrays, torch.device("cpu"))
    model = model_from_config(cfg)
    model.load_state_dict(load_checkpoint(run)["model"])
    with torch.no_grad():
        post_train = model.forward_with_activations(d.x_train)[1].post[0].numpy()
        post_test = model.forward_with_activations(d.x_test)[1].post[0].numpy()
        post = model.forward_with_activations(d.x_probe)[1].post[0].numpy()
    snap = np.load(run / "snapshots" / f"epoch_{cfg.epochs:05d}.npz")
    labels = np.load(run / "labels.npz")
    true, noisy, mask, half = labels["original"], labels["noisy"], labels["noisy_mask"], labels["clean_half"]
    for key, select, classes in (("noisy", mask, true), ("noisy_by_noisy", mask, noisy), ("clean", ~mask, true),
                                 ("clean_a", half == 1, true), ("clean_b", half == 2, true)):
        sel = select & (classes == 4)
        assert np.allclose(snap[f"l1_mean_{key}"][4], post_train[sel].mean(axis=0), atol=1e-5), key
        assert snap[f"count_{key}"][4] == sel.sum()
    assert np.allclose(snap["l1_mean_test"][4], post_test[d.y_test.numpy() == 4].mean(axis=0), atol=1e-5)
    assert snap["l1_absmax"].argmax() == snap["l1_top_idx"][0]
    assert np.allclose(snap["l1_top_act"][:, 0], post[:, snap["l1_top_idx"][0]], atol=1e-5)
    assert np.allclose(snap["l1_img_top"], post.max(axis=1), atol=1e-6)
    assert np.array_equal(snap["l1_img_argmax"], post.argmax(axis=1))
    lower_median = [np.sort(r[r > 0])[((r > 0).sum() - 1) // 2] if (r > 0).any() else 0.0 for r in post]
    assert np.allclose(snap["l1_img_median_nonzero"], lower_median, atol=1e-6)  # torch's lower median
    assert np.allclose(snap["l1_rand_act"], post[:, snap["l1_rand_idx"]], atol=1e-6)


def test_clean_halves_are_disjoint_clean_and_as_large_as_the_noisy_group(finished_run, synthetic_arrays):
    run = finished_run
    labels = np.load(run / "labels.npz")
    true, mask, half = labels["original"], labels["noisy_mask"], labels["clean_half"]
    assert not (mask & (half > 0)).any()
    for c in range(10):
        n_noisy, n_clean = int((mask & (true == c)).sum()), int((~mask & (true == c)).sum())
        expected = min(n_noisy, n_clean // 2)
        assert ((half == 1) & (true == c)).sum() == ((half == 2) & (true == c)).sum() == expected


def test_per_image_test_correctness_reproduces_test_accuracy(finished_run, synthetic_arrays):
    from ddd_support.runs.schema import read_test_correct

    run = finished_run
    correct = read_test_correct(run)
    metrics = pd.read_csv(run / "metrics.csv")
    assert correct.shape == (len(metrics), len(synthetic_arrays.y_test))
    assert np.allclose(correct.mean(axis=1), metrics["test_acc"])


def test_run_directory_records_config_provenance_and_labels(finished_run):
    cfg = tiny_config()
    run = finished_run
    assert run.relative_to(run.parents[2]).as_posix() == "test/mlp3/seed0"
    state = json.loads((run / "config.json").read_text())
    assert state["status"] == "complete" and state["epochs_done"] == cfg.epochs
    assert TrainConfig.from_dict(state["config"]) == cfg
    for key in ("package_version", "torch_version", "device", "start_time", "end_time", "data_source"):
        assert state["provenance"][key] is not None, key
    labels = np.load(run / "labels.npz")
    assert labels["noisy_mask"].sum() == round(0.3 * 300)
    assert np.array_equal(labels["noisy"] != labels["original"], labels["noisy_mask"])


def test_interrupted_and_resumed_run_equals_uninterrupted_run(tmp_path, synthetic_arrays, monkeypatch, trained_run):
    cfg = tiny_config(epochs=8)
    reference = metrics(trained_run(epochs=8))  # trained uninterrupted

    interrupt_after_checkpoint(monkeypatch, cfg, tmp_path / "b", synthetic_arrays, epoch=5)
    resumed = metrics(train(cfg, tmp_path / "b", synthetic_arrays))
    pd.testing.assert_frame_equal(resumed[DETERMINISTIC], reference[DETERMINISTIC], check_exact=True)


def test_rerunning_a_complete_run_changes_nothing(tmp_path, synthetic_arrays, finished_run_copy):
    cfg = tiny_config()
    run = finished_run_copy
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    train(cfg, tmp_path, synthetic_arrays)
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == before


def test_more_epochs_continue_a_finished_run(tmp_path, synthetic_arrays, trained_run, trained_run_copy):
    run = trained_run_copy(tmp_path, epochs=4)  # finished at epoch 4
    extended = metrics(train(tiny_config(epochs=7), tmp_path, synthetic_arrays))
    reference = metrics(trained_run(epochs=7))  # trained to 7 at once
    pd.testing.assert_frame_equal(extended[DETERMINISTIC], reference[DETERMINISTIC], check_exact=True)
    assert json.loads((run / "config.json").read_text())["epochs_done"] == 7


def test_run_directory_of_another_config_is_refused_and_kept(tmp_path, synthetic_arrays, finished_run_copy):
    run = finished_run_copy
    before = (run / "metrics.csv").read_bytes()
    with pytest.raises(RunDirError, match="lr: recorded 0.001, requested 0.01"):
        train(tiny_config(lr=1e-2), tmp_path, synthetic_arrays)
    assert (run / "metrics.csv").read_bytes() == before


def test_damaged_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, synthetic_arrays, finished_run_copy):
    run = finished_run_copy
    latest = run / checkpoints.checkpoint_name(6)
    latest.write_bytes(latest.read_bytes()[:100])
    with pytest.warns(UserWarning, match="damaged"):
        state = load_checkpoint(run)
    assert state["epoch"] == 5


def test_no_intact_checkpoint_is_a_clear_error(tmp_path, synthetic_arrays, finished_run_copy):
    run = finished_run_copy
    for f in run.glob("checkpoint_e*.pt"):
        f.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="Delete"):
        load_checkpoint(run)


def test_resume_after_damaged_checkpoint_still_reproduces_the_run(tmp_path, synthetic_arrays, finished_run,
                                                                  trained_run_copy):
    cfg = tiny_config(epochs=6)
    reference = metrics(finished_run)
    run = trained_run_copy(tmp_path / "b", epochs=4)
    latest = run / checkpoints.checkpoint_name(4)
    latest.write_bytes(b"garbage")
    with pytest.warns(UserWarning):
        resumed = metrics(train(cfg, tmp_path / "b", synthetic_arrays))
    pd.testing.assert_frame_equal(resumed[DETERMINISTIC], reference[DETERMINISTIC], check_exact=True)


def test_diverging_loss_stops_the_run_with_a_message(tmp_path, synthetic_arrays):
    with pytest.raises(TrainingDiverged, match="Lower lr"):
        train(tiny_config(lr=1e12, epochs=3), tmp_path, synthetic_arrays)


KILL_SCRIPT = textwrap.dedent("""
    import sys, numpy as np
    sys.path.insert(0, {tests!r})
    from conftest import tiny_config, synthetic_images
    from ddd_support.data.cifar import CifarArrays
    from ddd_support.train.driver import train
    y = np.repeat(np.arange(10), 30); yt = np.repeat(np.arange(10), 10)
    arrays = CifarArrays(synthetic_images(y, 0), y, synthetic_images(yt, 1), yt, "synthetic")
    import torch; torch.set_num_threads(2)
    train(tiny_config(epochs=40, base_width=64), sys.argv[1], arrays)
""")


@pytest.mark.slow
def test_sigkilled_run_resumes_to_identical_metrics(tmp_path, synthetic_arrays, trained_run):
    script = tmp_path / "run.py"
    script.write_text(KILL_SCRIPT.format(tests=str(REPO / "tests")))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "killed")], env=env)
    index = tmp_path / "killed" / "test" / "mlp3" / "seed0" / "checkpoint.json"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if index.exists() and json.loads(index.read_text())["checkpoints"][-1]["epoch"] >= 10:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # resumed here, in this process, with the script's configuration, data and threads; the
    # uninterrupted run is trained the same way (once per session)
    cfg = tiny_config(epochs=40, base_width=64)
    resumed = train(cfg, tmp_path / "killed", synthetic_arrays)
    assert len(json.loads((resumed / "config.json").read_text())["provenance"]["resumes"]) == 1
    killed = metrics(resumed)
    whole = metrics(trained_run(epochs=40, base_width=64))
    assert len(whole) == 41
    pd.testing.assert_frame_equal(killed[DETERMINISTIC], whole[DETERMINISTIC], check_exact=True)


def test_resume_between_checkpoints_redoes_the_epochs_after_the_last_one(tmp_path, synthetic_arrays, monkeypatch,
                                                                         trained_run):
    cfg = tiny_config(epochs=8, checkpoint_every=3)
    reference = metrics(trained_run(epochs=8, checkpoint_every=3))  # trained uninterrupted
    real_end_epoch = __import__("ddd_support.train.driver", fromlist=["RunRecorder"]).RunRecorder.end_epoch

    def crash_after_epoch_7(self, epoch, *args, **kwargs):
        row = real_end_epoch(self, epoch, *args, **kwargs)
        if epoch == 7:  # last checkpoint at 6: epoch 7 is recorded but not checkpointed
            raise KeyboardInterrupt
        return row

    monkeypatch.setattr("ddd_support.train.driver.RunRecorder.end_epoch", crash_after_epoch_7)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "b", synthetic_arrays)
    monkeypatch.undo()
    assert len(metrics(tmp_path / "b" / "test" / "mlp3" / "seed0")) == 8
    resumed = metrics(train(cfg, tmp_path / "b", synthetic_arrays))
    pd.testing.assert_frame_equal(resumed[DETERMINISTIC], reference[DETERMINISTIC], check_exact=True)


def test_asking_for_fewer_epochs_than_an_unfinished_run_has_is_refused(tmp_path, synthetic_arrays, monkeypatch):
    interrupt_after_checkpoint(monkeypatch, tiny_config(epochs=8), tmp_path, synthetic_arrays, epoch=5)
    with pytest.raises(RunDirError, match="already trained to epoch 5"):
        train(tiny_config(epochs=3), tmp_path, synthetic_arrays)


def test_extended_run_lists_its_earlier_final_snapshot(tmp_path, synthetic_arrays, trained_run_copy):
    run = trained_run_copy(tmp_path, epochs=4, snapshot_dense_until=1)
    train(tiny_config(epochs=7, snapshot_dense_until=1), tmp_path, synthetic_arrays)
    listed = json.loads((run / "config.json").read_text())["snapshot_epochs"]
    on_disk = sorted(int(p.stem.split("_")[1]) for p in (run / "snapshots").glob("*.npz"))
    assert listed == on_disk and 4 in listed and 7 in listed


def test_a_resume_is_recorded_and_a_changed_thread_count_is_warned_about(tmp_path, synthetic_arrays,
                                                                         trained_run_copy):
    run = trained_run_copy(tmp_path, epochs=3)  # trained with 2 threads
    with pytest.warns(UserWarning, match="torch_threads"):
        train(tiny_config(epochs=5, threads=1), tmp_path, synthetic_arrays)
    prov = json.loads((run / "config.json").read_text())["provenance"]
    assert prov["torch_threads"] == 2
    assert [r["torch_threads"] for r in prov["resumes"]] == [1]
