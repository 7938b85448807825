"""Run directories that cannot be corrupted: one process per directory, validated records, clear errors."""

import errno
import json
import os
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
import zlib
import zipfile

import numpy as np
import pandas as pd
import pytest
from filelock import FileLock

from ddd_support import files
from ddd_support.runs import checkpoints
from ddd_support.runs.reader import load_run
from ddd_support.runs.async_checkpoint import AsyncCheckpointer
from ddd_support.cli import main
from ddd_support.config import snapshot_epochs
from ddd_support.errors import CheckpointError, ConfigError, DDDError, DiskFullError, RunDirError, TrainingDiverged
from ddd_support.runs.schema import METRIC_COLUMNS, TIMING_COLUMNS
from ddd_support.train.driver import train, train_runs

from tests.conftest import REPO, interrupt_after_checkpoint, tiny_config

DETERMINISTIC = [c for c in METRIC_COLUMNS if c not in TIMING_COLUMNS]


def run_dir_of(out, seed=0):
    return out / "test" / "mlp3" / f"seed{seed}"


def as_older_run(run):
    """Make ``run`` look like a run directory recorded before checksums: no checksum file, no mark."""
    (run / "checksums.json").unlink()
    state = json.loads((run / "config.json").read_text())
    state.pop("checksummed")
    (run / "config.json").write_text(json.dumps(state))






TINY_CLI = ["--model", "mlp3", "--set", "n_train=40", "--set", "n_test=20", "--set", "base_width=8",
            "--set", "epochs=3", "--set", "probe_per_class=1", "--quiet"]


def _largest_member_data_offset(path) -> int:
    with zipfile.ZipFile(path) as archive:
        info = max(archive.infolist(), key=lambda i: i.compress_size)
    with open(path, "rb") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = struct.unpack("<HH", f.read(4))
    return info.header_offset + 30 + name_len + extra_len


# --------------------------------------------------------------------------- one process per run directory
RACE_SCRIPT = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    sys.path.insert(0, {tests!r})
    import torch
    torch.set_num_threads(1)
    from conftest import synthetic_images, tiny_config
    from ddd_support.train import driver as training
    from ddd_support.train.engine import Engine
    from ddd_support.data.cifar import CifarArrays

    y = np.repeat(np.arange(10), 30); yt = np.repeat(np.arange(10), 10)
    arrays = CifarArrays(synthetic_images(y, 0), y, synthetic_images(yt, 1), yt, "synthetic")
    trained = []
    real_epoch = Engine.train_epoch
    def counted(*args, **kwargs):
        trained.append(1)
        return real_epoch(*args, **kwargs)
    Engine.train_epoch = counted
    out, ready, go = sys.argv[1:4]
    open(ready, "w").close()
    while not os.path.exists(go):
        time.sleep(0.01)
    training.train(tiny_config(epochs=8), out, arrays)
    print("epochs trained:", len(trained))
""")


def test_two_processes_on_one_run_directory_train_it_once_and_keep_every_snapshot(tmp_path):
    script = tmp_path / "race.py"
    script.write_text(RACE_SCRIPT.format(tests=str(REPO / "tests")))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("DDD_LOCK_TIMEOUT", None)
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path / "runs"), str(tmp_path / f"ready{i}"),
                               str(go)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    deadline = time.time() + 180
    while not all((tmp_path / f"ready{i}").exists() for i in range(2)):
        assert time.time() < deadline and all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.05)
    go.touch()  # both start training at the same moment
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    trained = sorted(int(out.split("epochs trained:")[1]) for out, _ in results)
    assert trained == [0, 8], "the run must be trained once; the waiting process finds it complete"
    run = run_dir_of(tmp_path / "runs")
    state = json.loads((run / "config.json").read_text())
    assert state["status"] == "complete" and state["epochs_done"] == 8
    assert "resumes" not in state["provenance"]
    cfg = tiny_config(epochs=8)
    taken = sorted(int(p.stem.split("_")[1]) for p in (run / "snapshots").glob("epoch_*.npz"))
    assert taken == snapshot_epochs(8, cfg.snapshot_dense_until, cfg.snapshot_per_decade)
    assert list(pd.read_csv(run / "metrics.csv")["epoch"]) == list(range(9))
    load_run(run).test_correct  # noqa: B018 - every record reads and agrees


def test_a_run_directory_locked_by_another_process_is_a_clear_error_with_a_timeout(tmp_path, synthetic_arrays,
                                                                                    monkeypatch):
    run = run_dir_of(tmp_path)
    run.mkdir(parents=True)
    monkeypatch.setenv("DDD_LOCK_TIMEOUT", "0.2")
    with FileLock(str(run / ".lock")):
        with pytest.raises(RunDirError, match=r"being trained by another process \(lock .*\.lock\)"):
            train(tiny_config(epochs=2), tmp_path, synthetic_arrays)
    assert not (run / "config.json").exists()
    train(tiny_config(epochs=2), tmp_path, synthetic_arrays)  # once free, it trains
    assert json.loads((run / "config.json").read_text())["status"] == "complete"


def test_stale_temp_files_are_removed_when_the_run_directory_is_opened(tmp_path, synthetic_arrays, trained_run_copy):
    run = trained_run_copy(tmp_path, epochs=2)
    stale = [run / ".metrics.csv.k3j2h1.tmp", run / ".checkpoint_e00002.pt.abc123.tmp",
             run / "snapshots" / ".epoch_00001.npz.zz9.tmp"]
    for f in stale:
        f.write_bytes(b"half a write")
    train(tiny_config(epochs=2), tmp_path, synthetic_arrays)
    assert not [f for f in stale if f.exists()]
    assert (run / "metrics.csv").exists()


# --------------------------------------------------------------------------- metrics.csv validated
def test_a_changed_digit_in_metrics_is_detected_when_the_run_is_read(tmp_path, trained_run_copy, capsys):
    run = trained_run_copy(tmp_path, epochs=4)
    lines = (run / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    row = lines[3].split(",")
    col = header.index("test_acc")
    assert row[col].startswith("0.")
    row[col] = "0.9" + row[col][3:]  # e.g. 0.347 -> 0.947
    lines[3] = ",".join(row)
    (run / "metrics.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(RunDirError, match="metrics.csv does not match .* changed after training"):
        load_run(run)
    assert main(["-q", "analyze", str(run), "--no-figures"]) == 1
    err = capsys.readouterr().err
    assert "changed after training" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_blank_value_is_refused_on_read_even_without_checksums(tmp_path, trained_run_copy):
    run = trained_run_copy(tmp_path, epochs=4)
    as_older_run(run)  # structure is still checked
    metrics = pd.read_csv(run / "metrics.csv")
    load_run(run)
    metrics.loc[2, "test_acc"] = np.nan
    metrics.to_csv(run / "metrics.csv", index=False, float_format="%.17g")
    with pytest.raises(RunDirError, match=r"no value in column test_acc at epoch\(s\) 2"):
        load_run(run)


def test_a_half_cut_row_at_the_checkpoint_is_refused_on_resume(tmp_path, synthetic_arrays, monkeypatch):
    cfg = tiny_config(epochs=6)
    interrupt_after_checkpoint(monkeypatch, cfg, tmp_path, synthetic_arrays, epoch=3)
    run = run_dir_of(tmp_path)
    text = (run / "metrics.csv").read_text()
    last = text.rstrip("\n").rsplit("\n", 1)[1]
    assert last.startswith("3,")
    cut = text[:len(text) - len(last) // 2 - 1]
    (run / "metrics.csv").write_text(cut)
    with pytest.raises(RunDirError, match=r"metrics.csv .*Delete .* to start this run again"):
        train(cfg, tmp_path, synthetic_arrays)
    as_older_run(run)  # without checksums the missing values are refused all the same
    with pytest.raises(RunDirError, match=r"metrics.csv has no value in column .* at epoch\(s\) 3"):
        train(cfg, tmp_path, synthetic_arrays)
    assert (run / "metrics.csv").read_text() == cut, "nothing recorded is overwritten"


def test_an_interrupted_run_resumes_with_its_checksums_intact(tmp_path, synthetic_arrays, monkeypatch, trained_run):
    cfg = tiny_config(epochs=6, checkpoint_every=2)
    reference = pd.read_csv(trained_run(epochs=6, checkpoint_every=2) / "metrics.csv")  # trained uninterrupted
    interrupt_after_checkpoint(monkeypatch, cfg, tmp_path / "b", synthetic_arrays, epoch=4)
    run = train(cfg, tmp_path / "b", synthetic_arrays)
    resumed = load_run(run).metrics  # verified against checksums.json
    pd.testing.assert_frame_equal(resumed[DETERMINISTIC], reference[DETERMINISTIC], check_exact=True)
    assert json.loads((run / "checksums.json").read_text())["metrics.csv"] == [
        files.file_sha256(run / "metrics.csv")]


# --------------------------------------------------------------------------- checkpoint index
def test_a_deleted_checkpoint_index_is_rebuilt_from_the_checkpoint_files(tmp_path, synthetic_arrays, monkeypatch,
                                                                         trained_run):
    cfg = tiny_config(epochs=6)
    reference = pd.read_csv(trained_run(epochs=6) / "metrics.csv")  # trained uninterrupted
    interrupt_after_checkpoint(monkeypatch, cfg, tmp_path / "b", synthetic_arrays, epoch=4)
    run = run_dir_of(tmp_path / "b")
    (run / "checkpoint.json").unlink()
    from ddd_support.train.engine import Engine

    trained = []
    real_epoch = Engine.train_epoch
    monkeypatch.setattr(Engine, "train_epoch", lambda *a, **k: trained.append(1) or real_epoch(*a, **k))
    with pytest.warns(UserWarning, match="checkpoint.json was missing or unreadable: rebuilt from checkpoint_e00004"):
        train(cfg, tmp_path / "b", synthetic_arrays)
    assert len(trained) == 2, "resumed after epoch 4, not restarted from epoch 0"
    resumed = pd.read_csv(run / "metrics.csv")
    pd.testing.assert_frame_equal(resumed[DETERMINISTIC], reference[DETERMINISTIC], check_exact=True)


def test_checkpoint_files_that_fail_their_crc_are_not_used_to_rebuild_the_index(tmp_path, trained_run_copy):
    run = trained_run_copy(tmp_path, epochs=4)
    (run / "checkpoint.json").unlink()
    for f in run.glob("checkpoint_e*.pt"):
        payload = bytearray(f.read_bytes())
        payload[_largest_member_data_offset(f) + 5] ^= 0x55  # in tensor data: torch.load alone would not notice
        f.write_bytes(bytes(payload))
    with pytest.raises(CheckpointError, match="none of checkpoint_e00004.pt, checkpoint_e00003.pt is intact"):
        checkpoints.load_checkpoint(run)


# --------------------------------------------------------------------------- clear errors
@pytest.mark.parametrize("name", ["labels.npz", "probe.npz"])
def test_a_damaged_static_file_is_a_clear_error_on_resume(tmp_path, synthetic_arrays, trained_run_copy, name):
    run = trained_run_copy(tmp_path, epochs=2)
    payload = (run / name).read_bytes()
    (run / name).write_bytes(payload[:len(payload) // 2])
    with pytest.raises(RunDirError, match=f"{name} does not match .*written again from the configuration"):
        train(tiny_config(epochs=4), tmp_path, synthetic_arrays)
    with pytest.raises(RunDirError, match=f"{name} does not match .* changed after training"):
        load_run(run)
    (run / name).unlink()  # as the message says: it is written anew, and the run continues
    train(tiny_config(epochs=4), tmp_path, synthetic_arrays)
    assert json.loads((run / "config.json").read_text())["epochs_done"] == 4


def test_a_damaged_snapshot_is_a_clear_error_when_read(tmp_path, trained_run_copy):
    run = trained_run_copy(tmp_path, epochs=2)
    snap = run / "snapshots" / "epoch_00001.npz"
    payload = bytearray(snap.read_bytes())
    start = _largest_member_data_offset(snap)
    payload[start:start + 16] = bytes(16)
    snap.write_bytes(bytes(payload))
    with pytest.raises(zlib.error), np.load(snap) as z:  # what reading it raised before
        {k: z[k] for k in z.files}
    with pytest.raises(RunDirError, match="epoch_00001.npz does not match its SHA-256"):
        load_run(run)
    as_older_run(run)  # without checksums, reading it is the clear error
    data = load_run(run)
    with pytest.raises(RunDirError, match="cannot read .*epoch_00001.npz, it is damaged"):
        data.snapshot(1)


def test_a_negative_seed_is_refused_before_any_directory_is_made(image_root, tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(["train", "--seed", "-1", "--out", str(out), *TINY_CLI]) == 2
    assert "seed must be a non-negative integer" in capsys.readouterr().err
    assert not out.exists()


def test_more_training_images_than_the_data_set_has_are_refused(image_root, tmp_path, synthetic_arrays, capsys):
    with pytest.raises(ConfigError, match="n_train=1000 is more than the 300 training images"):
        train(tiny_config(n_train=1000), tmp_path / "a", synthetic_arrays)
    assert not (tmp_path / "a").exists()
    out = tmp_path / "runs"
    assert main(["train", "--out", str(out), *TINY_CLI, "--set", "n_test=1000"]) == 2
    assert "n_test=1000 is more than the 40 test images" in capsys.readouterr().err
    assert not list(out.rglob("config.json")), "no run directory marked running"


class BackgroundCheckpointer(AsyncCheckpointer):
    """Checkpoints in a background thread, as on CUDA."""

    def __init__(self, pin=None, background=True):
        super().__init__(pin=False, background=True)


def test_a_full_disk_during_a_background_checkpoint_is_one_clear_error(tmp_path, synthetic_arrays, monkeypatch,
                                                                       capsys):
    monkeypatch.setattr("ddd_support.runs.recorder.AsyncCheckpointer", BackgroundCheckpointer)
    real_mkstemp = tempfile.mkstemp

    def full_for_late_checkpoints(*args, prefix="", **kwargs):
        if prefix.startswith(".checkpoint_e") and int(prefix[len(".checkpoint_e"):].split(".")[0]) >= 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_mkstemp(*args, prefix=prefix, **kwargs)

    monkeypatch.setattr(files.tempfile, "mkstemp", full_for_late_checkpoints)
    with pytest.raises(DiskFullError) as info:
        train(tiny_config(epochs=6), tmp_path, synthetic_arrays)
    message = str(info.value)
    assert isinstance(info.value, DDDError) and isinstance(info.value, OSError)
    assert "No space left on device" in message and "Free some disk space and run the same command again" in message
    assert "Traceback" not in capsys.readouterr().err, "nothing printed from the checkpoint thread"
    run = run_dir_of(tmp_path)
    assert checkpoints.load_checkpoint(run)["epoch"] == 2, "the checkpoints written before are intact"
    monkeypatch.setattr(files.tempfile, "mkstemp", real_mkstemp)
    monkeypatch.setenv("DDD_LOCK_TIMEOUT", "0")  # the failed run released its lock
    train(tiny_config(epochs=6), tmp_path, synthetic_arrays)
    assert load_run(run).status == "complete"


def test_a_full_disk_is_a_one_line_message_from_the_command_line(image_root, tmp_path, monkeypatch, capsys):
    real_mkstemp = tempfile.mkstemp

    def full_under_runs(*args, dir=None, **kwargs):
        if str(dir).startswith(str(tmp_path / "runs")):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(files.tempfile, "mkstemp", full_under_runs)
    assert main(["train", "--out", str(tmp_path / "runs"), *TINY_CLI]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot write") and "Free some disk space" in err
    assert len(err.strip().splitlines()) == 1


# --------------------------------------------------------------------------- divergence
def test_an_exploding_but_finite_loss_stops_the_run(tmp_path, synthetic_arrays):
    with pytest.raises(TrainingDiverged, match=r"more than 10 x its initial value.*Lower lr.*last checkpoint"):
        train(tiny_config(lr=1e9, epochs=3), tmp_path, synthetic_arrays)
    state = json.loads((run_dir_of(tmp_path) / "config.json").read_text())
    assert state["status"] == "diverged" and state["diverged"]["epoch"] == 1
    assert "Lower lr" in state["diverged"]["reason"]


def test_an_exploding_loss_stops_a_batched_run_too(tmp_path, synthetic_arrays):
    cfgs = [tiny_config(seed=s, lr=1e9, epochs=3) for s in (0, 1)]
    with pytest.raises(TrainingDiverged, match="Lower lr") as info:
        train_runs(cfgs, tmp_path, synthetic_arrays)
    diverged = int(str(info.value).split(":")[0].split("seed ")[1])
    statuses = {s: json.loads((run_dir_of(tmp_path, s) / "config.json").read_text())["status"] for s in (0, 1)}
    assert statuses == {s: "diverged" if s == diverged else "running" for s in (0, 1)}, "only the run that diverged"


def test_of_two_runs_sharing_a_seed_only_the_one_that_diverged_is_marked(tmp_path, synthetic_arrays):
    cfgs = [tiny_config(seed=0, epochs=3), tiny_config(seed=0, epochs=3, lr=1e9)]
    outs = [tmp_path / "calm", tmp_path / "wild"]
    with pytest.raises(TrainingDiverged) as info:
        train_runs(cfgs, outs, synthetic_arrays)
    assert info.value.run_dir == run_dir_of(tmp_path / "wild")
    status = {name: json.loads((run_dir_of(tmp_path / name) / "config.json").read_text())["status"]
              for name in ("calm", "wild")}
    assert status == {"calm": "running", "wild": "diverged"}
