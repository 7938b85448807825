"""Compact copies of finished runs, small enough to commit as the book's reference results.

A reference run keeps the run-directory layout (so ``analysis.load_run`` reads it) with:
``config.json`` (plus a ``reference`` entry saying what was left out), ``metrics.csv``,
``test_correct.npz`` (both checked against the run's checksums, and their own recorded in
``checksums.json``), ``labels.npz``, ``probe.npz``, and at most ``max_snapshots`` snapshots,
thinned evenly in log-epoch, whose arrays are stored in float16 with only the class means the
separation index needs (``KEPT_MEANS``), the activations of the top ``top_k`` neurons, the
per-image statistics, and the random control neurons' activations in the last snapshot only.
No checkpoints: the ablation, which needs the weights, is computed at export time and kept as
``ablation.csv`` with each row's per-image test correctness (``ablation_test_correct.npz``).
Only complete runs are exported.

A reference root (``reference/`` in the project) also holds ``reference.json``, an index of
its runs with the command that produced them, and ``<profile>/tables/*.csv``, the summary
tables of ``ddd_support.analysis.tables`` over all seeds. Its presence marks the folder as a
reference: the analysis chapters read runs from it and never train into it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from ddd_support.data.cifar import CifarArrays

from ddd_support.errors import RunDirError
from ddd_support.files import atomic_savez, atomic_write_json, file_sha256, now_iso, read_json
from ddd_support.runs.checkpoints import CHECKPOINT_INDEX
from ddd_support.runs.schema import (METRICS_FILE, TEST_CORRECT_FILE, config_differences, read_metrics, read_npz, read_test_correct, run_directory, write_checksums)
from ddd_support.runs.recorder import snapshot_epochs_on_disk, snapshot_file

#: Folder of the reference's sweeps (``sweep --export reference/sweeps``).
SWEEPS_DIR = "sweeps"
#: The project's committed reference runs.
REFERENCE_ROOT = Path(__file__).resolve().parents[2] / "reference"
#: The index file that marks a folder as a reference root.
REFERENCE_INDEX = "reference.json"

#: Snapshot keys (after the ``l{layer}_`` prefix) kept in a reference run.
#: (Schema-1 runs keep ``mean_clean`` and ``mean_noisy``, the probe means they have.)
KEPT_MEANS: tuple[str, ...] = ("mean_clean_a", "mean_clean_b", "mean_noisy", "mean_test", "mean_unseen")
SCHEMA1_MEANS: tuple[str, ...] = ("mean_clean", "mean_noisy")
TOP_KEYS: tuple[str, ...] = ("top_idx", "top_val", "top_act", "top_pre")
#: Kept in the last exported snapshot only (the correlation baseline reads the last snapshot).
LAST_ONLY_KEYS: tuple[str, ...] = ("rand_idx", "rand_act")
HALF_PRECISION_KEYS: tuple[str, ...] = ("mean_clean", "mean_noisy", "mean_clean_a", "mean_clean_b", "mean_test",
                                        "mean_unseen",
                                        "absmax", "pre_absmax", "top_val", "top_act", "top_pre", "logits",
                                        "img_top", "img_median_nonzero", "rand_act")


def thin_epochs(epochs: list[int], max_count: int) -> list[int]:
    """At most ``max_count`` of ``epochs`` (sorted), spread evenly in log(1 + epoch), first and last kept."""
    epochs = sorted(epochs)
    if len(epochs) <= max_count:
        return epochs
    targets = np.linspace(np.log1p(epochs[0]), np.log1p(epochs[-1]), max_count)
    logs = np.log1p(np.asarray(epochs, dtype=float))
    chosen = {epochs[int(np.argmin(np.abs(logs - t)))] for t in targets}
    return sorted(chosen | {epochs[0], epochs[-1]})


def compact_snapshot(snapshot: dict[str, np.ndarray], top_k: int, last: bool = True) -> dict[str, np.ndarray]:
    """The reference form of one snapshot: fewer class means, top ``top_k`` neurons, float16 arrays;
    the random control neurons only if ``last`` (the last exported snapshot)."""
    kept_means = KEPT_MEANS if any(k.endswith("_mean_clean_a") for k in snapshot) else SCHEMA1_MEANS
    out = {}
    for key, value in snapshot.items():
        name = key.split("_", 1)[1] if key.startswith("l") and "_" in key and key[1].isdigit() else key
        if name.startswith("mean_") and name not in kept_means:
            continue
        if name.startswith("count_") and f"mean_{name[len('count_'):]}" not in kept_means:
            continue
        if name in LAST_ONLY_KEYS and not last:
            continue
        if name in TOP_KEYS:
            value = value[..., :top_k]
        if name in HALF_PRECISION_KEYS:
            value = np.asarray(value, dtype=np.float16)
        out[key] = value
    return out


def export_reference(run_dir: str | os.PathLike, dest: str | os.PathLike, max_snapshots: int = 12,
                     top_k: int = 2, cifar: "CifarArrays | None" = None, ablation: bool = True) -> Path:
    """Write the compact copy of a complete run under ``dest``; returns its directory.

    If ``ablation`` and the run has a checkpoint, the ablation of its largest layer's top neuron
    (zero, five random neurons as control) is computed from it and stored as ``ablation.csv``; ``cifar``
    (the data set, as ``load_cifar10`` returns it) saves loading it once per run.
    """
    source = Path(run_dir)
    state = read_json(source / "config.json")
    if state.get("status") != "complete":
        raise RunDirError(f"{source} is not complete (status {state.get('status')!r}); finish it with "
                          "`python -m ddd_support train ...` before exporting it")
    cfg = state["config"]
    advice = f"Restore it, or train {source} again, before exporting it."
    read_metrics(source, advice)  # checked against its checksum: a changed file is not exported
    read_test_correct(source, advice=advice)
    target = run_directory(dest, cfg["profile"], cfg["model"], cfg["seed"])
    (target / "snapshots").mkdir(parents=True, exist_ok=True)
    for name in (METRICS_FILE, "labels.npz", "probe.npz", TEST_CORRECT_FILE):
        if (source / name).exists():
            shutil.copyfile(source / name, target / name)
    write_checksums(target, {name: [file_sha256(target / name)] for name in (METRICS_FILE, TEST_CORRECT_FILE)
                             if (target / name).exists()})
    available = snapshot_epochs_on_disk(source)
    kept = thin_epochs(available, max_snapshots)
    for epoch in kept:
        arrays = compact_snapshot(read_npz(snapshot_file(source, epoch), advice), top_k, last=epoch == kept[-1])
        atomic_savez(snapshot_file(target, epoch), **arrays)
    state["snapshot_epochs"] = kept
    state["reference"] = {"exported_from_snapshots": available, "top_k": top_k,
                          "class_means_kept": [k for k in KEPT_MEANS + SCHEMA1_MEANS
                                               if f"l1_{k}" in arrays],
                          "random_neurons": "last snapshot only", "float16": list(HALF_PRECISION_KEYS),
                          "checkpoints": "not included", "exported": now_iso()}
    atomic_write_json(target / "config.json", state)  # the ablation below loads the copy
    if ablation and (source / CHECKPOINT_INDEX).exists():
        state["reference"]["ablation"] = _store_ablation(source, target, cifar)
    else:
        state["reference"]["ablation"] = ("not computed: " + ("not asked for" if not ablation
                                                              else "the run has no checkpoint"))
    atomic_write_json(target / "config.json", state)
    return target


def _store_ablation(source: Path, target: Path, cifar: "CifarArrays | None") -> dict:
    """Ablate the candidate layer's large-activation neuron (as chapter 05 does) and store it with the copy."""
    from ddd_support.runs.reader import load_run
    from ddd_support.analysis.ablation import (DEFAULT_MODE, DEFAULT_RANDOM, STORED_ABLATION, ablate_neuron,
                                    ablation_layer, write_stored_ablation)

    layer = ablation_layer(load_run(source))
    table = ablate_neuron(load_run(source), layer, mode=DEFAULT_MODE, n_random=DEFAULT_RANDOM, arrays=cifar)
    write_stored_ablation(table, target)
    return {"file": STORED_ABLATION, "layer": layer, "mode": DEFAULT_MODE, "n_random": DEFAULT_RANDOM,
            "epoch": int(table["epoch"].iloc[0])}


def is_reference_root(path: str | os.PathLike) -> bool:
    """True if ``path`` is a reference root (it holds ``reference.json``)."""
    return (Path(path) / REFERENCE_INDEX).is_file()


def write_reference_index(dest: str | os.PathLike) -> Path:
    """Index every run under ``dest`` in ``dest/reference.json`` and write each profile's summary tables."""
    from ddd_support.runs.reader import find_runs, load_runs
    from ddd_support.analysis.tables import write_summary_tables

    dest = Path(dest)
    runs = load_runs(find_runs(dest))
    if not runs:
        raise RunDirError(f"no runs under {dest}; export some first")
    index: dict = {"written": now_iso(), "profiles": {}}
    for profile in sorted({r.profile for r in runs}):
        group = [r for r in runs if r.profile == profile]
        seeds = sorted({r.seed for r in group})
        models = [m for m in dict.fromkeys(r.model for r in group)]
        write_summary_tables(group, dest / profile / "tables")
        index["profiles"][profile] = {
            "models": models, "seeds": seeds,
            "produced_by": list(dict.fromkeys(_train_command(r) for r in sorted(group, key=lambda r: r.seed))),
            "overrides": sorted({k for r in group for k in _overridden(r)}),
            "runs": [{"model": r.model, "seed": r.seed, "path": str(r.path.relative_to(dest)),
                      "epochs": int(r.metrics["epoch"].max()), "status": r.status,
                      "device": r.provenance.get("device_name") or r.provenance.get("device"),
                      "torch": r.provenance.get("torch_version"),
                      "threads": r.provenance.get("torch_threads"),
                      "git_commit": r.provenance.get("git_commit"),
                      "start_time": r.provenance.get("start_time"), "end_time": r.provenance.get("end_time")}
                     for r in group],
            "tables": sorted(p.name for p in (dest / profile / "tables").glob("*.csv")),
        }
    index["sweeps"] = sweep_index(dest / SWEEPS_DIR)
    atomic_write_json(dest / REFERENCE_INDEX, index)
    return dest / REFERENCE_INDEX


def sweep_index(folder: Path) -> dict[str, dict]:
    """What each sweep under ``folder`` (``reference/sweeps``) holds and how it was made (validated)."""
    from ddd_support.sweeps.results import read_sweep

    found = {}
    for record_file in sorted(folder.glob("*/sweep.json")):
        spec, table, _, record = read_sweep(record_file.parent)
        found[spec.name] = {
            "produced_by": f"python -m ddd_support sweep experiments/sweeps/{spec.name}.yaml "
                           f"--export {folder.parent.name}/{folder.name}",
            "runs": len(table), "varied": spec.varied_keys,
            "trained_at": sorted({str(c) for c in table.get("git_commit", pd.Series(dtype=str)).dropna()}),
            "tabulated_at": record.get("provenance", {}).get("git_commit"),
            "invocations": record.get("invocations", []),
            "training_span": record.get("training_span", {}),
        }
    return found


def _train_command(run) -> str:
    """The training command that makes ``run`` (its profile, seed and any value it changed)."""
    sets = "".join(f" --set {k}={run.config[k]}" for k in _overridden(run) if k != "profile")
    return f"python -m ddd_support train --profile {run.profile} --seed {run.seed}{sets}"


def _overridden(run) -> list[str]:
    """Config keys of ``run`` that differ from its profile's values (empty: exactly the profile)."""
    from ddd_support.config import PROFILES

    if run.profile not in PROFILES:
        return ["profile"]
    from ddd_support.config import TrainConfig

    expected = PROFILES[run.profile].config(run.model, run.seed).to_dict()
    recorded = TrainConfig.from_dict(run.config).to_dict()  # keys added since take their defaults
    return list(config_differences(recorded, expected, ignore=frozenset({"progress"})))


def update_sweep_index(root: str | os.PathLike) -> Path:
    """Refresh only the ``sweeps`` entry of ``root/reference.json`` (after ``sweep --export``)."""
    root = Path(root)
    index = read_json(root / REFERENCE_INDEX)
    index["sweeps"] = sweep_index(root / SWEEPS_DIR)
    atomic_write_json(root / REFERENCE_INDEX, index)
    return root / REFERENCE_INDEX
