"""The read and export side of run directories under attack: nothing exported, read or resumed is silently wrong."""

import json
import threading
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from filelock import FileLock

from ddd_support.book.reference import export_reference
from ddd_support.cli import main
from ddd_support.data.cifar import CifarArrays
from ddd_support.errors import CheckpointError, RunDirError
from ddd_support.runs import checkpoints
from ddd_support.runs.reader import load_run
from ddd_support.train.driver import train

from tests.conftest import interrupt_after_checkpoint, tiny_config


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


# --------------------------------------------------------------------------- 1, 2: export never merges
def test_export_into_a_trained_run_of_another_configuration_is_refused(tmp_path, trained_run_copy, capsys):
    other = trained_run_copy(tmp_path / "x", epochs=4, lr=3e-4)
    source = trained_run_copy(tmp_path / "y", epochs=4)
    before = {p.name: p.read_bytes() for p in other.rglob("*") if p.is_file()}
    assert main(["-q", "export-reference", str(source), "--dest", str(tmp_path / "x"), "--no-ablation"]) == 1
    assert "holds a trained run" in _one_line_error(capsys)
    assert {p.name: p.read_bytes() for p in other.rglob("*") if p.is_file()} == before, "nothing mixed in"


def test_export_over_a_copy_of_another_configuration_is_refused_or_replaced_whole(tmp_path, trained_run_copy):
    first = trained_run_copy(tmp_path / "a", epochs=12, lr=3e-4, snapshot_dense_until=2)
    second = trained_run_copy(tmp_path / "b", epochs=6, snapshot_dense_until=1)
    target = export_reference(first, tmp_path / "ref", ablation=False)
    with pytest.raises(RunDirError, match=r"another configuration \(lr: there 0.0003, exported 0.001;"):
        export_reference(second, tmp_path / "ref", ablation=False)
    assert load_run(target).config["lr"] == 3e-4
    export_reference(second, tmp_path / "ref", ablation=False, replace=True)
    copy = load_run(target)  # validated as a whole
    assert copy.config["lr"] == 1e-3 and copy.snapshot_epochs == load_run(second).snapshot_epochs
    on_disk = sorted(int(p.stem.split("_")[1]) for p in (target / "snapshots").glob("*.npz"))
    assert on_disk == copy.snapshot_epochs, "no snapshot of the replaced copy left behind"


def test_re_exporting_the_same_run_replaces_its_copy_whole(tmp_path, trained_run_copy):
    run_dir = trained_run_copy(tmp_path / "runs", epochs=12)
    export_reference(run_dir, tmp_path / "ref", max_snapshots=8, ablation=False)
    target = export_reference(run_dir, tmp_path / "ref", max_snapshots=3, ablation=False)
    on_disk = sorted(int(p.stem.split("_")[1]) for p in (target / "snapshots").glob("*.npz"))
    assert on_disk == load_run(target).snapshot_epochs and len(on_disk) == 3


def test_two_points_of_a_sweep_are_exported_apart(tmp_path, trained_run_copy, capsys):
    sweep = tmp_path / "sweeps" / "lr"
    (sweep / "spec.yaml").parent.mkdir(parents=True)
    (sweep / "spec.yaml").write_text("name: lr\n")
    runs = [trained_run_copy(sweep / f"lr={lr}", epochs=4, lr=lr) for lr in (1e-3, 3e-4)]
    assert main(["-q", "export-reference", *map(str, runs), "--dest", str(tmp_path / "ref"), "--no-ablation"]) == 0
    copies = [load_run(tmp_path / "ref" / "lr" / f"lr={lr}" / "test" / "mlp3" / "seed0") for lr in (1e-3, 3e-4)]
    assert [c.config["lr"] for c in copies] == [1e-3, 3e-4]
    index = json.loads((tmp_path / "ref" / "reference.json").read_text())
    assert sorted(index["profiles"]) == ["lr/lr=0.0003/test", "lr/lr=0.001/test"]


def test_two_runs_with_one_destination_are_refused_before_anything_is_written(tmp_path, trained_run_copy, capsys):
    runs = [trained_run_copy(tmp_path / f"out{i}", epochs=4, lr=lr) for i, lr in enumerate((1e-3, 3e-4))]
    assert main(["-q", "export-reference", *map(str, runs), "--dest", str(tmp_path / "ref"), "--no-ablation"]) == 1
    assert "would both be exported to" in _one_line_error(capsys)
    assert not (tmp_path / "ref").exists()


def test_export_keeps_no_more_top_neurons_than_the_run_recorded(tmp_path, trained_run_copy):
    from ddd_support.errors import ConfigError

    run_dir = trained_run_copy(tmp_path / "runs", epochs=3, top_k=3)
    with pytest.raises(ConfigError, match="--top-k 4 is more than the 3 top neurons"):
        export_reference(run_dir, tmp_path / "ref", top_k=4, ablation=False)
    copy = load_run(export_reference(run_dir, tmp_path / "ref", top_k=3, max_snapshots=2, ablation=False))
    assert copy.state["reference"]["top_k"] == 3 and copy.snapshot(3)["l1_top_act"].shape[1] == 3
    assert copy.snapshot_epochs == [0, 3]


# --------------------------------------------------------------------------- 3: the data changed before a resume
def test_a_resume_on_changed_training_images_is_refused(tmp_path, synthetic_arrays, monkeypatch):
    cfg = tiny_config(epochs=6)
    interrupt_after_checkpoint(monkeypatch, cfg, tmp_path, synthetic_arrays, epoch=3)
    import torch

    from ddd_support.train.prepare import prepare_data

    d = prepare_data(cfg, synthetic_arrays, torch.device("cpu"))
    outside_probe = next(i for i in range(len(d.train_indices)) if i not in set(d.probe.index[d.probe.group < 2]))
    x_train = synthetic_arrays.x_train.copy()
    image = d.train_indices[outside_probe]
    x_train[image, 0, 0, 0] ^= 1  # one pixel of one training image changed by one level
    changed = CifarArrays(x_train, synthetic_arrays.y_train, synthetic_arrays.x_test, synthetic_arrays.y_test,
                          "synthetic")
    run_dir = tmp_path / "test" / "mlp3" / "seed0"
    before = (run_dir / "config.json").read_text()
    with pytest.raises(RunDirError, match="training data changed since .* start a new run"):
        train(cfg, tmp_path, changed)
    assert (run_dir / "config.json").read_text() == before, "the recorded normalisation is kept"
    train(cfg, tmp_path, synthetic_arrays)  # on its own data it resumes
    assert load_run(run_dir).status == "complete"


# --------------------------------------------------------------------------- 4: a deleted or edited snapshot
def test_a_deleted_snapshot_is_refused_by_read_export_and_extension(tmp_path, synthetic_arrays, trained_run_copy):
    run_dir = trained_run_copy(tmp_path / "runs", epochs=6)
    (run_dir / "snapshots" / "epoch_00006.npz").unlink()
    with pytest.raises(RunDirError, match=r"lacks the snapshot\(s\) of epoch\(s\) 6"):
        load_run(run_dir)
    with pytest.raises(RunDirError, match=r"lacks the snapshot\(s\) of epoch\(s\) 6"):
        export_reference(run_dir, tmp_path / "ref", ablation=False)
    with pytest.raises(RunDirError, match=r"lacks the snapshot\(s\) of epoch\(s\) \[6\]"):
        train(tiny_config(epochs=9), tmp_path / "runs", synthetic_arrays)


@pytest.mark.parametrize("name", ["snapshots/epoch_00002.npz", "probe.npz", "labels.npz"])
def test_an_edited_snapshot_probe_or_label_file_is_refused_when_read(tmp_path, trained_run_copy, name):
    run_dir = trained_run_copy(tmp_path / "runs", epochs=4)
    with np.load(run_dir / name) as z:
        arrays = {k: z[k] for k in z.files}
    key = next(k for k, v in arrays.items() if v.dtype.kind in "fi" and v.size > 1)
    arrays[key] = arrays[key].copy()
    arrays[key].flat[0] += 1
    np.savez_compressed(run_dir / name, **arrays)
    with pytest.raises(RunDirError, match=f"{name} does not match its SHA-256 .* changed after training"):
        load_run(run_dir)


# --------------------------------------------------------------------------- 5: an edit with its checksums deleted
def test_an_edited_metric_with_its_checksum_file_deleted_is_refused_everywhere(tmp_path, synthetic_arrays, capsys,
                                                                             trained_run_copy):
    run_dir = trained_run_copy(tmp_path / "runs", epochs=4)
    text = (run_dir / "metrics.csv").read_text()
    (run_dir / "metrics.csv").write_text(text.replace(",0.", ",0.9", 1))
    (run_dir / "checksums.json").unlink()
    for argv in (["analyze", str(run_dir), "--no-figures"],
                 ["export-reference", str(run_dir), "--dest", str(tmp_path / "ref"), "--no-ablation"]):
        assert main(["-q", *argv]) == 1
        assert "has no checksums.json, though it was recorded with one" in _one_line_error(capsys)
    with pytest.raises(RunDirError, match="has no checksums.json"):
        train(tiny_config(epochs=6), tmp_path / "runs", synthetic_arrays)
    assert not (tmp_path / "ref").exists()


# --------------------------------------------------------------------------- 6: a damaged final checkpoint
def test_export_with_a_damaged_final_checkpoint_refuses_an_ablation_from_an_older_one(tmp_path, synthetic_arrays,
                                                                                      trained_run_copy):
    run_dir = trained_run_copy(tmp_path / "runs", epochs=4)
    newest = run_dir / checkpoints.checkpoint_name(4)
    newest.write_bytes(newest.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="checkpoint_e00004.pt is damaged.*--no-ablation"):
        export_reference(run_dir, tmp_path / "ref", cifar=synthetic_arrays)
    assert not (tmp_path / "ref" / "test").exists() or not any((tmp_path / "ref" / "test").rglob("config.json"))
    assert load_run(export_reference(run_dir, tmp_path / "ref", ablation=False)).status == "complete"


# --------------------------------------------------------------------------- 7: an edited config
@pytest.mark.parametrize("key, value", [("base_width", 32), ("model", "mlp7")])
def test_an_edited_config_is_refused_with_or_without_checksums(tmp_path, trained_run_copy, capsys, key, value):
    run_dir = trained_run_copy(tmp_path / "runs", epochs=3)
    state = json.loads((run_dir / "config.json").read_text())
    state["config"][key] = value
    (run_dir / "config.json").write_text(json.dumps(state))
    with pytest.raises(RunDirError, match="config.json does not match its SHA-256"):
        load_run(run_dir)
    (run_dir / "checksums.json").unlink()
    state.pop("checksummed")
    (run_dir / "config.json").write_text(json.dumps(state))
    for argv in (["analyze", str(run_dir), "--no-figures"],
                 ["export-reference", str(run_dir), "--dest", str(tmp_path / "ref"), "--no-ablation"]):
        assert main(["-q", *argv]) == 1
        assert "its snapshots hold widths [16, 16]" in _one_line_error(capsys)


# --------------------------------------------------------------------------- runs the analyses cannot use
def test_a_diverged_run_is_marked_and_reported_as_diverged(tmp_path, synthetic_arrays, capsys):
    from ddd_support.errors import TrainingDiverged

    with pytest.raises(TrainingDiverged):
        train(tiny_config(lr=1e9, epochs=3), tmp_path / "runs", synthetic_arrays)
    run_dir = tmp_path / "runs" / "test" / "mlp3" / "seed0"
    for argv in (["analyze", str(run_dir), "--no-figures"],
                 ["export-reference", str(run_dir), "--dest", str(tmp_path / "ref"), "--no-ablation"]):
        assert main(["-q", *argv]) == 1
        assert "diverged at epoch 1" in _one_line_error(capsys)


def test_a_run_without_clean_images_reads_without_a_false_error(tmp_path, synthetic_arrays):
    run_dir = train(tiny_config(epochs=3, noise_rate=0.999, noise_exact_per_class=True), tmp_path / "runs",
                    synthetic_arrays)
    run = load_run(run_dir)
    assert run.metrics["clean_loss"].isna().all() and run.metrics["noisy_loss"].notna().all()


def test_a_read_that_catches_a_write_in_progress_is_repeated_and_never_advises_deletion(tmp_path, trained_run_copy):
    run_dir = trained_run_copy(tmp_path / "runs", epochs=3)
    original = (run_dir / "metrics.csv").read_bytes()
    between_writes = original.replace(b",0.", b",0.9", 1)  # a version checksums.json does not list (yet)
    (run_dir / "metrics.csv").write_bytes(between_writes)
    with pytest.raises(RunDirError, match="changed after training"):
        load_run(run_dir)  # nobody trains it: the change is real
    with FileLock(str(run_dir / ".lock")):  # as a training process holds it
        finish = threading.Timer(0.3, lambda: (run_dir / "metrics.csv").write_bytes(original))
        finish.start()
        assert load_run(run_dir).metrics.equals(load_run_metrics(original))  # read again once the write ended
        finish.join()
        (run_dir / "metrics.csv").write_bytes(between_writes)
        with pytest.raises(RunDirError, match="being trained by another process right now.*do not delete it") as info:
            load_run(run_dir)
        assert "delete the run directory" not in str(info.value)


def load_run_metrics(payload: bytes) -> pd.DataFrame:
    import io

    return pd.read_csv(io.BytesIO(payload))


def test_reads_during_training_never_fail(tmp_path, synthetic_arrays):
    cfg = tiny_config(epochs=20, checkpoint_every=5)
    run_dir = tmp_path / "runs" / "test" / "mlp3" / "seed0"
    trainer = threading.Thread(target=train, args=(cfg, tmp_path / "runs", synthetic_arrays))
    trainer.start()
    reads, errors = 0, []
    while trainer.is_alive():
        if (run_dir / "metrics.csv").exists():
            try:
                run = load_run(run_dir)
                assert run.test_correct is not None and len(run.test_correct) == len(run.metrics)
                reads += 1
            except RunDirError as exc:  # pragma: no cover - the failure this test guards against
                errors.append(str(exc))
    trainer.join()
    assert not errors, errors[:3]
    assert reads > 0 and load_run(run_dir).status == "complete"


# --------------------------------------------------------------------------- 8: a sweep over longer runs
def test_a_sweep_does_not_tabulate_runs_trained_longer_than_its_spec(tmp_path, synthetic_arrays):
    from ddd_support.sweeps.results import sweep_tables
    from ddd_support.sweeps.spec import expand, run_root, spec_from_arguments

    tiny = ["n_train=100", "n_test=50", "base_width=8", "probe_per_class=1"]
    longer = spec_from_arguments("ep", "smoke", ["lr=1e-3"], [*tiny, "epochs=6"])
    for r in expand(longer):
        train(replace(r.config, progress=False, device="cpu"), run_root(tmp_path, longer, r.point), synthetic_arrays)
    shorter = spec_from_arguments("ep", "smoke", ["lr=1e-3"], [*tiny, "epochs=3"])
    tables = sweep_tables(shorter, tmp_path)
    assert tables.runs.empty and tables.claims.empty and tables.activation.empty
    assert len(tables.mismatched) == 3
    assert all("trained to 6 epochs, the spec asks for 3" in m for m in tables.mismatched)
    tables = sweep_tables(longer, tmp_path)
    assert list(tables.runs["epochs"]) == [6, 6, 6] and not tables.mismatched
    runs_of = lambda t: set(zip(t["point"], t["model"], t["seed"]))  # noqa: E731
    assert runs_of(tables.claims) == runs_of(tables.activation) == runs_of(tables.runs)


# --------------------------------------------------------------------------- smaller ones
def test_a_checkpoint_a_kill_left_beside_the_index_is_removed(tmp_path, synthetic_arrays, monkeypatch):
    cfg = tiny_config(epochs=6)
    interrupt_after_checkpoint(monkeypatch, cfg, tmp_path, synthetic_arrays, epoch=3)
    run_dir = tmp_path / "test" / "mlp3" / "seed0"
    orphan = run_dir / checkpoints.checkpoint_name(1)  # killed between the index update and the deletion
    orphan.write_bytes((run_dir / checkpoints.checkpoint_name(3)).read_bytes())
    train(cfg, tmp_path, synthetic_arrays)
    assert sorted(p.name for p in run_dir.glob("checkpoint_e*.pt")) == [checkpoints.checkpoint_name(5),
                                                                       checkpoints.checkpoint_name(6)]


def test_a_valid_cache_in_a_read_only_folder_is_used(image_root, monkeypatch):
    from ddd_support.data import cifar

    first = cifar.load_cifar10(str(image_root), "imagefolder", progress=False)

    class ReadOnlyLock:
        def __init__(self, *args, **kwargs):
            pass

        def acquire(self):
            raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(cifar, "FileLock", ReadOnlyLock)
    monkeypatch.setattr(cifar, "_read_imagefolder", lambda *a: pytest.fail("decoded again"))
    again = cifar.load_cifar10(str(image_root), "imagefolder", progress=False)
    assert np.array_equal(again.x_train, first.x_train) and np.array_equal(again.y_test, first.y_test)
