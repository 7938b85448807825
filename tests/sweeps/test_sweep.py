"""The sweep command: specs, point names, the overfitting rise, and sweeps on a Dask LocalCluster."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ddd_support.cli import main
from ddd_support.errors import ConfigError, RunDirError
from ddd_support.files import read_json
from ddd_support.runs.schema import TIMING_COLUMNS
from ddd_support.sweeps.spec import SweepSpec, expand, load_spec, point_name, spec_from_arguments, sweep_spec_with
from ddd_support.sweeps.execute import estimated_cost, task_groups
from ddd_support.sweeps.results import (CORRECT_FILE, SWEEP_TABLE, image_rise, overfitting_rise, read_sweep,
                                       rise_difference, sweep_findings, width_peak)

from tests.conftest import REPO
from tests.sweeps.conftest import sweep_here

SPEC = {"name": "grid", "profile": "smoke",
        "set": {"n_train": 60, "n_test": 40, "epochs": 4, "probe_per_class": 1, "checkpoint_every": 1},
        "grid": {"noise_rate": [0.0, 0.3], "base_width": [4, 8], "model": ["mlp3"]}}


# --------------------------------------------------------------------------- specs and points
def test_every_combination_is_a_point_named_by_what_varies():
    runs = expand(SweepSpec.from_dict(SPEC))
    assert [r.point for r in runs] == ["noise_rate=0.0,base_width=4", "noise_rate=0.0,base_width=8",
                                       "noise_rate=0.3,base_width=4", "noise_rate=0.3,base_width=8"]
    assert {(r.config.noise_rate, r.config.base_width, r.config.epochs) for r in runs} == {
        (0.0, 4, 4), (0.0, 8, 4), (0.3, 4, 4), (0.3, 8, 4)}
    assert all(r.config.model == "mlp3" and r.config.seed == 0 and r.config.profile == "smoke" for r in runs)


def test_models_and_seeds_default_to_the_profile_and_seed_zero_and_name_no_point():
    runs = expand(SweepSpec.from_dict({"name": "s", "profile": "smoke", "grid": {"lr": [1e-3, 3e-4]}}))
    assert len(runs) == 2 * 3
    assert {r.config.model for r in runs} == {"mlp3", "mlp5", "mlp7"}
    assert {r.point for r in runs} == {"lr=0.001", "lr=0.0003"}


def test_extending_an_axis_keeps_the_names_of_the_existing_points():
    small = expand(SweepSpec.from_dict(SPEC))
    bigger = {**SPEC, "grid": {**SPEC["grid"], "noise_rate": [0.0, 0.3, 0.5], "seed": [0, 1]}}
    keys = {r.key for r in expand(SweepSpec.from_dict(bigger))}
    assert {r.key for r in small} <= keys and len(keys) == 3 * 2 * 2


def test_explicit_points_are_crossed_with_the_grid_and_name_their_own_keys():
    spec = SweepSpec.from_dict({"name": "search", "profile": "smoke", "grid": {"model": ["mlp7"]},
                                "points": [{"n_train": 400, "lr": 1e-3}, {"n_train": 800, "batch_size": 32}]})
    assert [r.point for r in expand(spec)] == ["n_train=400,lr=0.001", "n_train=800,batch_size=32"]


def test_hidden_width_lists_and_seeds_parse_from_the_command_line():
    spec = spec_from_arguments("cli", "smoke", ["hidden_widths=8-8,16-16", "seed=0,2", "model=mlp3"],
                               ["epochs=3"])
    runs = expand(spec)
    assert {r.point for r in runs} == {"hidden_widths=8-8", "hidden_widths=16-16"}
    assert {r.config.seed for r in runs} == {0, 2}
    assert {r.config.widths for r in runs} == {(8, 8), (16, 16)} and runs[0].config.epochs == 3


def test_command_line_axes_and_values_add_to_a_spec_file():
    spec = sweep_spec_with(SweepSpec.from_dict(SPEC), ["seed=0,1"], ["lr=0.01"])
    assert spec.grid["seed"] == (0, 1) and spec.fixed["lr"] == 0.01 and spec.fixed["n_train"] == 60


@pytest.mark.parametrize("change, words", [
    ({"grid": {"noise_rte": [0.1]}}, "unknown config key 'noise_rte'"),
    ({"grid": {"device": ["cpu", "cuda"]}}, "device cannot be swept"),
    ({"grid": {"noise_rate": []}}, "has no values"),
    ({"grid": {"noise_rate": [0.1, 0.1]}}, "repeats a value"),
    ({"grid": {"model": ["mlp9"]}}, "unknown model 'mlp9'"),
    ({"set": {"seed": 3}}, "seed is a sweep axis"),
    ({"name": "../elsewhere"}, "sweep name"),
    ({"profile": "gpu"}, "unknown profile 'gpu'"),
    ({"grid": {}, "points": []}, "nothing to sweep"),
    ({"grids": {}}, "unknown entries ['grids']"),
])
def test_a_bad_spec_is_one_clear_configuration_error(change, words):
    with pytest.raises(ConfigError) as info:
        expand(SweepSpec.from_dict({**SPEC, **change}))
    assert words in str(info.value)


def test_a_value_out_of_range_is_refused_before_anything_runs():
    with pytest.raises(ConfigError, match="noise_rate must be in"):
        expand(SweepSpec.from_dict({**SPEC, "grid": {"noise_rate": [0.3, 1.5]}}))


def test_spec_files_that_are_missing_or_not_yaml_are_configuration_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_spec(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_spec(bad)


def test_the_committed_specs_expand(tmp_path):
    for path in sorted((REPO / "experiments" / "sweeps").glob("*.yaml")):
        assert expand(load_spec(path)), path


def test_values_are_typed_before_they_name_a_point():
    a = SweepSpec.from_dict({"name": "s", "profile": "smoke", "grid": {"lr": ["1e-4", 3e-4], "base_width": [8.0]}})
    b = spec_from_arguments("s", "smoke", ["lr=1.0e-4,0.0003", "base_width=8"], [])
    names = ["lr=0.0001,base_width=8", "lr=0.0003,base_width=8"]
    assert [r.point for r in expand(a) if r.config.model == "mlp3"] == names
    assert [r.point for r in expand(b) if r.config.model == "mlp3"] == names
    with pytest.raises(ConfigError, match="repeats a value"):
        SweepSpec.from_dict({"name": "s", "profile": "smoke", "grid": {"base_width": [8, 8.0]}})


def test_two_points_that_are_one_run_are_refused():
    spec = SweepSpec.from_dict({"name": "s", "profile": "smoke", "grid": {"model": ["mlp3"]},
                                "points": [{"lr": 1e-3}, {"lr": 1e-3, "noise_rate": 0.3}]})
    with pytest.raises(ConfigError, match="are the same run"):
        expand(spec)


def test_a_key_both_set_and_swept_is_refused():
    with pytest.raises(ConfigError, match="both in set and as an axis"):
        sweep_spec_with(SweepSpec.from_dict(SPEC), [], ["noise_rate=0.2"])


def test_the_spec_read_back_from_a_sweep_names_the_same_points(tmp_path):
    folder = _fake_sweep(tmp_path, grid={"noise_rate": [0.3], "base_width": [4], "model": ["mlp3"]})
    spec, table, _, _ = read_sweep(folder)
    assert [r.point for r in expand(spec)] == list(table["point"]) == ["noise_rate=0.3,base_width=4"]


def test_point_name_of_nothing_varied_is_base():
    assert point_name({}) == "base"


def test_wide_runs_are_scheduled_first_and_seeds_group_per_point_and_model():
    spec = SweepSpec.from_dict({**SPEC, "grid": {**SPEC["grid"], "seed": [0, 1]}})
    runs = expand(spec)
    assert estimated_cost([r for r in runs if r.config.base_width == 8][:1]) > \
        estimated_cost([r for r in runs if r.config.base_width == 4][:1])
    groups = task_groups(runs, batched_seeds=True)
    assert len(groups) == 4 and all({r.config.seed for r in g} == {0, 1} for g in groups)
    assert len(task_groups(runs, batched_seeds=False)) == 8


# --------------------------------------------------------------------------- the rise
def _planted(n_images: int, accuracies: list[float], seed: int = 0) -> np.ndarray:
    """Correctness with exactly the given accuracy at each epoch, in both halves."""
    rng = np.random.default_rng(seed)
    rows = []
    for acc in accuracies:
        row = np.zeros(n_images, dtype=bool)
        row[rng.permutation(n_images)[: int(round(acc * n_images))]] = True
        rows.append(row)
    return np.array(rows)


def test_the_rise_is_the_fall_of_accuracy_from_the_best_epoch_to_the_end():
    accuracies = [0.1, 0.5, 0.8, 0.7, 0.6, 0.55, 0.5, 0.5, 0.5, 0.5, 0.5]
    r = overfitting_rise(_planted(2000, accuracies))
    assert r["best_epoch_half_a"] == 2
    assert r["rise"] == pytest.approx(0.3, abs=0.05)
    assert r["rise_low"] > 0 and r["rise_outcome"] == "rises"


def test_no_change_after_the_best_epoch_is_no_detectable_change():
    r = overfitting_rise(_planted(2000, [0.1, 0.6, 0.6, 0.6, 0.6, 0.6]))
    assert r["rise_low"] <= 0 <= r["rise_high"] and r["rise_outcome"] == "no detectable change"


def test_choosing_the_best_epoch_on_the_other_half_removes_the_selection_bias():
    """Flat accuracy with independent noise per epoch: the split-half rise averages zero,
    while choosing the best epoch on the images it is measured on would show a rise."""
    rng = np.random.default_rng(1)
    split, same = [], []
    for _ in range(200):
        correct = rng.random((31, 400)) < 0.5
        split.append(overfitting_rise(correct)["rise"])
        best = int(np.argmax(correct[1:, 1::2].mean(axis=1))) + 1
        same.append(correct[best, 1::2].mean() - correct[-3:, 1::2].mean())
    assert abs(np.mean(split)) < 0.005
    assert np.mean(same) > 0.03


def _run_table(points: list[tuple[float, str]]) -> pd.DataFrame:
    return pd.DataFrame({"point": [f"noise_rate={r},w={w}" for r, w in points], "model": "mlp3", "seed": 0,
                         "noise_rate": [r for r, _ in points], "widths": [w for _, w in points]})


def test_the_difference_of_two_rises_is_paired_over_the_same_images():
    flat = _planted(2000, [0.1, 0.8, 0.6, 0.6, 0.6, 0.6], seed=2)
    falling = flat.copy()
    falling[-1, 1::4] = False          # the last epoch loses a quarter of the half-B images
    table = _run_table([(0.0, "8-8"), (0.4, "8-8")])
    correct = {f"{p}|mlp3|seed0": c for p, c in zip(table["point"], (flat, falling))}
    d = rise_difference(table, correct, "8-8", 0.0, 0.4)
    lost = falling[-1, 1::2].mean() - flat[-1, 1::2].mean()
    assert d["difference"] == pytest.approx(-lost, abs=1e-12) and d["low"] > 0
    unpaired_se = np.hypot(*(np.std(image_rise(c), ddof=1) for c in (flat, falling))) / np.sqrt(1000)
    assert (d["high"] - d["low"]) / (2 * 1.96) < unpaired_se


def test_an_intermediate_width_worse_than_both_ends_is_a_model_wise_peak():
    ends = {"16": 0.5, "64": 0.3, "256": 0.45, "1024": 0.55}   # end accuracy: width 64 is the worst
    table = _run_table([(0.3, f"{w}-{w}") for w in ends])
    correct = {f"{p}|mlp3|seed0": _planted(2000, [0.1, 0.6, acc, acc], seed=i)
               for i, (p, acc) in enumerate(zip(table["point"], ends.values()))}
    peak = width_peak(table, correct, 0.3)
    assert peak["peak_width"] == 64 and peak["verdict"] == "holds"
    assert peak["over_narrowest"] == pytest.approx(0.2, abs=0.04) and peak["over_widest_low"] > 0


def test_a_worst_width_at_an_end_is_no_peak_and_two_widths_cannot_have_one():
    table = _run_table([(0.3, "16-16"), (0.3, "64-64"), (0.3, "256-256")])
    correct = {f"{p}|mlp3|seed0": _planted(2000, [0.1, 0.6, acc, acc], seed=i)
               for i, (p, acc) in enumerate(zip(table["point"], (0.3, 0.4, 0.5)))}
    assert width_peak(table, correct, 0.3)["verdict"] == "inconclusive"
    assert width_peak(table.iloc[:2], correct, 0.3)["verdict"] == "not testable"


def test_comparisons_across_points_refuse_several_seeds_per_point():
    table = pd.concat([_run_table([(0.3, "16-16")]).assign(seed=s) for s in (0, 1)])
    with pytest.raises(ConfigError, match="one run per point"):
        width_peak(table, {}, 0.3)


# --------------------------------------------------------------------------- sweeps on Dask
def _spec_file(tmp_path: Path, **changes) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(json.dumps({**SPEC, **changes}))
    return path


def _sweep(spec: Path, out: Path, env: dict, *extra: str, wait: bool = True):
    """The sweep command in a process of its own (on an embedded LocalCluster of two workers unless
    ``extra`` names a scheduler)."""
    argv = [sys.executable, "-m", "ddd_support", "sweep", str(spec), "--out", str(out), "--workers", "2", "-q",
            *extra]
    if not wait:
        return subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def _sweep_on(scheduler: str, spec: Path, out: Path, *extra: str):
    """The sweep command in this process, on the session's running cluster at ``scheduler``."""
    return sweep_here(["sweep", str(spec), "--out", str(out), "--scheduler", scheduler, "-q", *extra])


def _metrics(folder: Path) -> dict[str, pd.DataFrame]:
    return {str(p.parent.relative_to(folder)): pd.read_csv(p).drop(columns=list(TIMING_COLUMNS))
            for p in sorted(folder.rglob("metrics.csv"))}


def _resumes(folder: Path) -> int:
    return sum(len(read_json(p)["provenance"].get("resumes", [])) for p in folder.rglob("config.json"))


@pytest.fixture(scope="module")
def grid_sweep(tmp_path_factory, sweep_scheduler):
    """``SPEC`` swept once per module into ``<out>/grid`` on the session's cluster: the finished command,
    its folder and the scheduler. Tests that change it work on a copy."""
    tmp = tmp_path_factory.mktemp("grid_sweep")
    first = _sweep_on(sweep_scheduler, _spec_file(tmp), tmp / "out")
    return first, tmp / "out" / "grid", sweep_scheduler


def _copy_sweep(folder: Path, out: Path) -> Path:
    """A copy of the sweep ``folder`` under ``out`` (the same name), its run directories with it."""
    import shutil

    shutil.copytree(folder, out / folder.name)
    return out / folder.name


@pytest.mark.slow
def test_a_sweep_trains_every_point_once_tabulates_them_and_a_rerun_trains_nothing(tmp_path, grid_sweep):
    first, swept, scheduler = grid_sweep
    assert first.returncode == 0, first.stderr
    assert first.stdout.split() == [str(swept)]
    folder = _copy_sweep(swept, tmp_path / "out")
    spec = _spec_file(tmp_path)
    _, table, epochs, record = read_sweep(folder)
    assert len(table) == 4 and set(table["point"]) == {r.point for r in expand(SweepSpec.from_dict(SPEC))}
    assert (table["epochs"] == 4).all() and len(epochs) == 4 * 5
    assert all(read_json(p)["status"] == "complete" for p in folder.rglob("config.json"))
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("metrics.csv")}

    again = _sweep_on(scheduler, spec, tmp_path / "out", "--export", str(tmp_path / "ref"))
    assert again.returncode == 0, again.stderr
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("metrics.csv")} == before
    invocations = read_json(folder / "sweep.json")["invocations"]
    assert len(invocations) == 2 and invocations[-1]["workers"] == 0  # nothing to train: no cluster started
    assert invocations[-1]["status"] == "finished"
    assert _resumes(folder) == 0
    exported = read_sweep(tmp_path / "ref" / "grid")[1]
    pd.testing.assert_frame_equal(exported, table)


@pytest.mark.slow
def test_extending_the_grid_trains_only_the_new_points(tmp_path, grid_sweep):
    first, swept, scheduler = grid_sweep
    assert first.returncode == 0, first.stderr
    folder = _copy_sweep(swept, tmp_path / "out")
    stamps = {p: p.stat().st_mtime_ns for p in folder.rglob("metrics.csv")}
    assert len(stamps) == 4
    wider = _spec_file(tmp_path, grid={**SPEC["grid"], "base_width": [4, 8, 12]})
    assert _sweep_on(scheduler, wider, tmp_path / "out").returncode == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert len(list(folder.rglob("metrics.csv"))) == 6


#: The sweep the kill and concurrency tests run: two runs long enough to be killed mid-run.
LONG = {"set": {**SPEC["set"], "epochs": 30, "n_train": 120},
        "grid": {"noise_rate": [0.3], "base_width": [8, 16], "model": ["mlp3"]}}


@pytest.fixture(scope="module")
def long_sweep(tmp_path_factory, sweep_scheduler):
    """``LONG`` swept once, undisturbed, per module on the session's cluster: its spec file and its
    folder, the reference the kill and concurrency tests compare with."""
    tmp = tmp_path_factory.mktemp("long_sweep")
    spec = _spec_file(tmp, **LONG)
    whole = _sweep_on(sweep_scheduler, spec, tmp / "whole")
    assert whole.returncode == 0, whole.stderr
    return spec, tmp / "whole" / "grid"


@pytest.mark.slow
def test_killing_a_worker_mid_run_resumes_its_run_to_identical_metrics(tmp_path, long_sweep, sweep_env):
    """The sweep command's own embedded LocalCluster of two workers, one of them killed while both
    train: its run resumes from its checkpoint, on the other worker or its restarted self."""
    psutil = pytest.importorskip("psutil")
    spec, whole = long_sweep
    proc = _sweep(spec, tmp_path / "killed", sweep_env, wait=False)
    index_files = lambda: list((tmp_path / "killed").rglob("checkpoint.json"))  # noqa: E731
    deadline, killed = time.monotonic() + 120, False
    while time.monotonic() < deadline and proc.poll() is None:
        if _checkpoint_epoch(index_files()) >= 5:
            workers = [c for c in psutil.Process(proc.pid).children(recursive=True)
                       if any("spawn_main" in part for part in c.cmdline())]
            if workers:
                workers[0].kill()
                killed = True
            break
        time.sleep(0.02)
    out, err = proc.communicate(timeout=600)
    assert killed, "no worker was killed mid-run (the runs finished too fast)"
    assert proc.returncode == 0, err
    assert _resumes(tmp_path / "killed") == 1, "the killed worker's run did not resume from a checkpoint"
    a, b = _metrics(whole), _metrics(tmp_path / "killed" / "grid")
    assert a.keys() == b.keys() and len(a) == 2
    for key in a:
        pd.testing.assert_frame_equal(a[key], b[key], check_exact=True)


def _checkpoint_epoch(files: list[Path]) -> int:
    """The newest epoch any run has checkpointed (from the checkpoint indexes)."""
    best = 0
    for p in files:
        try:
            text = p.read_text()
        except OSError:
            continue
        numbers = [int(s) for s in __import__("re").findall(r'"epoch":\s*(\d+)', text)]
        best = max([best, *numbers])
    return best


@pytest.mark.slow
def test_two_sweeps_started_at_once_on_one_folder_train_each_run_once(tmp_path, long_sweep, sweep_env,
                                                                     sweep_scheduler):
    """Two sweep processes on one cluster: each run is trained by one of them, the other waits for it."""
    spec, alone = long_sweep
    procs = [_sweep(spec, tmp_path / "out", sweep_env, "--scheduler", sweep_scheduler, wait=False)
             for _ in range(2)]
    results = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [r[1] for r in results]
    folder = tmp_path / "out" / "grid"
    invocations = read_json(folder / "sweep.json")["invocations"]
    assert len(invocations) == 2 and all(i["status"] == "finished" for i in invocations)
    assert all(i["workers"] > 0 for i in invocations), "one sweep found every run done: they did not overlap"
    assert _resumes(folder) == 0
    assert all(read_json(p)["status"] == "complete" for p in folder.rglob("config.json"))
    a, b = _metrics(folder), _metrics(alone)
    assert a.keys() == b.keys() and len(a) == 2
    for key in a:
        pd.testing.assert_frame_equal(a[key], b[key], check_exact=True)


def test_dry_run_lists_the_run_directories_and_trains_nothing(tmp_path, capsys):
    spec = _spec_file(tmp_path)
    assert main(["sweep", str(spec), "--out", str(tmp_path / "out"), "--dry-run", "-q"]) == 0
    listed = capsys.readouterr().out.split()
    assert listed[0] == str(tmp_path / "out" / "grid" / "noise_rate=0.0,base_width=4" / "smoke" / "mlp3" / "seed0")
    assert len(listed) == 4 and not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv, words", [
    (["sweep"], "give a sweep spec file"),
    (["sweep", "--name", "x", "--grid", "noise_rate"], "not of the form"),
    (["sweep", "--name", "x", "--grid", "noise_rate=0.1", "--workers", "0"], "--workers must be at least 1"),
    (["sweep", "--name", "x", "--grid", "seed=a"], "seeds are integers"),
    (["sweep", "--name", "x", "--grid", "lr=1e-3", "--set", "seed=3"], "seed is a sweep axis: use --grid seed="),
    (["sweep", "--name", "x", "--grid", "lr=1e-3", "--set", "profile=cpu"], "the profile is the spec's"),
])
def test_bad_sweep_arguments_exit_2_with_one_line(argv, words, capsys):
    assert main([*argv, "-q"]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_changed_sweep_table_is_refused_on_read(tmp_path):
    folder = _fake_sweep(tmp_path)
    _, table, _, _ = read_sweep(folder)
    changed = table.copy()
    changed.loc[0, "rise"] += 0.2
    changed.to_csv(folder / SWEEP_TABLE, index=False)
    with pytest.raises(RunDirError, match="rise or final accuracy .* differs"):
        read_sweep(folder)


def test_a_damaged_correctness_record_is_refused_on_read(tmp_path):
    folder = _fake_sweep(tmp_path)
    (folder / CORRECT_FILE).write_bytes(b"not a zip")
    with pytest.raises(RunDirError, match="cannot be read"):
        read_sweep(folder)


def _fake_sweep(tmp_path: Path, grid: dict | None = None) -> Path:
    """A finished sweep's files written by the real writers from planted correctness."""
    import yaml

    from ddd_support.files import atomic_savez, atomic_write_json
    from ddd_support.sweeps.results import CORRECT_FILE, EPOCH_TABLE, RECORD, RUN_COLUMNS, run_key

    spec = SweepSpec.from_dict({**SPEC, "grid": grid or {"noise_rate": [0.3], "model": ["mlp3"]}})
    (point,) = {r.point for r in expand(spec)}
    folder = tmp_path / "grid"
    folder.mkdir()
    correct = _planted(200, [0.1, 0.5, 0.7, 0.6, 0.5])
    rise = overfitting_rise(correct)
    row = {c: 0 for c in RUN_COLUMNS} | {"point": point, "model": "mlp3", "seed": 0, "noise_rate": 0.3,
                                         "base_width": 4, "final_test_acc": correct[-1].mean(), **rise}
    pd.DataFrame([row]).to_csv(folder / SWEEP_TABLE, index=False)
    pd.DataFrame({"point": point, "model": "mlp3", "seed": 0, "epoch": range(5),
                  "test_acc": correct.mean(axis=1)}).to_csv(folder / EPOCH_TABLE, index=False)
    key = run_key(point, "mlp3", 0)
    atomic_savez(folder / CORRECT_FILE, **{key: np.packbits(correct, axis=1), f"{key}|n_test": np.int64(200)})
    atomic_write_json(folder / RECORD, {"spec": spec.to_dict(), "runs_complete": 1, "invocations": []})
    (folder / "spec.yaml").write_text(yaml.safe_dump(spec.to_dict(), sort_keys=False))
    return folder


def test_findings_count_rises_and_compare_noise_rates():
    table = pd.DataFrame({
        "point": ["a", "b", "c", "d"], "model": "mlp3", "seed": 0,
        "widths": ["8-8"] * 2 + ["64-64"] * 2, "noise_rate": [0.0, 0.4] * 2,
        "rise_outcome": ["no detectable change"] * 3 + ["rises"],
        "final_noisy_acc": [np.nan, 0.5, np.nan, 1.0], "best_test_acc": [0.3, 0.3, 0.5, 0.5],
        "final_test_acc": [0.3, 0.29, 0.49, 0.4], "best_test_epoch": [90, 80, 12, 8],
        "post_fit_outcome": ["not testable", "not testable", "not testable", "rises"]})
    flat = _planted(2000, [0.1, 0.5, 0.5, 0.5])
    falling = _planted(2000, [0.1, 0.5, 0.4, 0.4])
    correct = {"a|mlp3|seed0": flat, "b|mlp3|seed0": flat, "c|mlp3|seed0": flat, "d|mlp3|seed0": falling}
    f = sweep_findings(table, correct)
    assert f["rises"].startswith("test error rises beyond its 95% interval after its best epoch in 1 of 2 runs "
                                 "with label noise and in 0 of 2 without")
    assert "width 8: +0.0 (95% interval +0.0 to +0.0)" in f["noise_effect"]   # the same record twice
    gain = float(__import__("re").search(r"width 64: \+([\d.]+)", f["noise_effect"]).group(1))
    assert 7 < gain < 14                                                      # planted: 10 points
    assert f["noise_effect_short"].startswith("at 1 of 2 widths the rise at 40% noise exceeds the rise at 0%")
    assert "1 of 2 runs with label noise fit 99%" in f["memorised"] and "widths 64" in f["memorised"]
    assert f["post_fit"] == ("of the 1 runs whose post-fit change is testable, test accuracy after the fit rises "
                             "in 1, falls in 0 and shows no detectable change in 0")
    assert f["best_narrow"] == "epochs 80 to 90" and f["best_wider"] == "epochs 8 to 12"
    assert f["unfitted"] == "width 8: 50% to 50%" and f["clean_by_width"] == "8: 70.0%, 64: 51.0%"


def test_the_slurm_recipe_writes_gpu_jobs_with_the_gpu_resource():
    pytest.importorskip("dask_jobqueue")
    sys.path.insert(0, str(REPO / "experiments" / "sweeps"))
    try:
        from slurm import slurm_cluster
    finally:
        sys.path.pop(0)
    cluster = slurm_cluster(cores=6, memory="16GB", gpus=1, runs_per_gpu=3, partition="gpu", walltime="01:00:00")
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert "#SBATCH --gres=gpu:1" in script and "#SBATCH -p gpu" in script and "#SBATCH -t 01:00:00" in script
    assert "--resources GPU=3" in script and "--nthreads 3" in script and "#SBATCH --cpus-per-task=6" in script
    assert sys.executable in script


def test_an_invocation_is_recorded_before_anything_trains_so_a_killed_sweep_stays_recorded(tmp_path, monkeypatch):
    import logging

    from ddd_support.sweeps import execute

    spec = load_spec(_spec_file(tmp_path))
    seen = {}

    def killed_at_start(*args, **kwargs):  # where a SIGKILL would leave the record
        seen["record"] = read_json(tmp_path / "out" / spec.name / "sweep.json")
        raise KeyboardInterrupt

    monkeypatch.setattr(execute, "require_dask", lambda: None)
    monkeypatch.setattr(execute, "make_client", killed_at_start)
    with pytest.raises(KeyboardInterrupt):
        execute.run_sweep_command(spec, tmp_path / "out", None, 1, 1, False, False, logging.getLogger("test"))
    [started] = seen["record"]["invocations"]
    assert started["status"] == "started" and "wall_seconds" not in started
    [ended] = read_json(tmp_path / "out" / spec.name / "sweep.json")["invocations"]
    assert ended["id"] == started["id"] and ended["status"] == "interrupted" and "wall_seconds" in ended
