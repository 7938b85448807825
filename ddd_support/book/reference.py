"""Compact copies of finished runs, small enough to commit as the book's reference results.

A reference run keeps the run-directory layout (so ``runs.reader.load_run`` reads it) with:
``config.json`` (plus a ``reference`` entry saying what was left out), ``metrics.csv``,
``test_correct.npz`` (both checked against the run's checksums, and their own recorded in
``checksums.json``), ``labels.npz``, ``probe.npz``, and at most ``max_snapshots`` snapshots,
thinned evenly in log-epoch, whose arrays are stored in float16 with only the class means the
separation index needs (``KEPT_MEANS``), the activations of the top ``top_k`` neurons, the
per-image statistics, and the random control neurons' activations in the last snapshot only.
No checkpoints: the ablation, which needs the weights, is computed at export time from the final
checkpoint and kept as ``ablation.csv`` with each row's per-image test correctness
(``ablation_test_correct.npz``). Only complete runs that read as a whole (``load_run``) are
exported. A copy goes to ``DEST/<profile>/<model>/seed<seed>``, a sweep point's to
``DEST/<sweep>/<point>/<profile>/<model>/seed<seed>``; it is built in a hidden folder beside its
place and moved there whole, replacing an earlier copy of the same run, never merging with it; a
destination that holds another configuration's copy or a trained run is refused (``replace``
replaces it whole).

A reference root (``reference/`` in the project) also holds ``reference.json``, an index of
its runs with the command that produced them, and ``<profile>/tables/*.csv``, the summary
tables of ``ddd_support.analysis.tables`` over all seeds. Its presence marks the folder as a
reference: the analysis chapters read runs from it and never train into it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from ddd_support.data.cifar import CifarArrays

from ddd_support.analysis.ablation import (
    DEFAULT_MODE,
    DEFAULT_RANDOM,
    STORED_ABLATION,
    ablate_neuron,
    ablation_layer,
    write_stored_ablation,
)
from ddd_support.analysis.tables import write_summary_tables
from ddd_support.book.locations import REFERENCE_INDEX, REFERENCE_ROOT, SWEEPS_DIR, is_reference_root  # noqa: F401
from ddd_support.config import PROFILES, RESUME_INSENSITIVE_KEYS, TrainConfig
from ddd_support.errors import ConfigError, RunDirError
from ddd_support.files import atomic_write_bytes, atomic_write_json, file_sha256, now_iso, npz_bytes, read_json
from ddd_support.runs.checkpoints import require_checkpoint
from ddd_support.runs.reader import READ_ADVICE, find_runs, load_run, load_runs
from ddd_support.runs.schema import (
    CHECKPOINT_INDEX,
    CHECKSUM_MARK,
    CONFIG_FILE,
    LABELS_FILE,
    METRICS_FILE,
    PROBE_FILE,
    TEST_CORRECT_FILE,
    config_differences,
    run_directory,
    snapshot_file,
    write_checksums,
)
from ddd_support.sweeps.results import RECORD as SWEEP_RECORD
from ddd_support.sweeps.results import read_sweep

#: The spec file a sweep's folder holds.
SWEEP_SPEC = "spec.yaml"


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


def check_export_options(max_snapshots: int, top_k: int) -> None:
    """A ConfigError for a snapshot count below 2 (the first and last are always kept) or a top_k below 1."""
    if max_snapshots < 2:
        raise ConfigError(f"--max-snapshots must be at least 2 (the first and the last snapshot are always kept), "
                          f"got {max_snapshots}")
    if top_k < 1:
        raise ConfigError(f"--top-k must be at least 1, got {top_k}")


def export_target(run_dir: str | os.PathLike, dest: str | os.PathLike, config: dict | None = None) -> Path:
    """Where the copy of ``run_dir`` goes: ``DEST/<profile>/<model>/seed<seed>``, or for a point of a sweep
    (``OUT/NAME/POINT/<profile>/<model>/seed<seed>``) ``DEST/NAME/POINT/<profile>/<model>/seed<seed>``, so
    that the points of a sweep, which share profile, model and seed, keep apart."""
    source = Path(run_dir)
    cfg = config if config is not None else read_json(source / CONFIG_FILE).get("config", {})
    try:
        profile, model, seed = str(cfg["profile"]), str(cfg["model"]), int(cfg["seed"])
    except (KeyError, TypeError, ValueError):
        raise RunDirError(f"{source / CONFIG_FILE} does not name the run's profile, model and seed. "
                          f"{READ_ADVICE}") from None
    base = Path(dest)
    parents = source.resolve().parents
    point = parents[2] if len(parents) > 3 else None
    if point is not None and ((point.parent / SWEEP_RECORD).exists() or (point.parent / SWEEP_SPEC).exists()):
        base = base / point.parent.name / point.name
    return run_directory(base, profile, model, seed)


def export_reference(run_dir: str | os.PathLike, dest: str | os.PathLike, max_snapshots: int = 12,
                     top_k: int = 2, cifar: "CifarArrays | None" = None, ablation: bool = True,
                     replace: bool = False) -> Path:
    """Write the compact copy of a complete run under ``dest`` (``export_target``); returns its directory.

    The run is validated as a whole first (``load_run``). The copy is built beside its place and then
    moved there, replacing a copy of the same run whole; a destination that holds another run, or a
    trained run, is refused unless ``replace``. If ``ablation`` and the run has a checkpoint, the
    ablation of its largest layer's top neuron (zero, five random neurons as control) is computed from
    its final checkpoint (a missing or damaged one is an error) and stored as ``ablation.csv``; ``cifar``
    (the data set, as ``load_cifar10`` returns it) saves loading it once per run.
    """
    check_export_options(max_snapshots, top_k)
    source = Path(run_dir)
    state = read_json(source / CONFIG_FILE)
    if state.get("status") not in ("complete", "diverged"):
        raise RunDirError(f"{source} is not complete (status {state.get('status')!r}); finish it with "
                          "`python -m ddd_support train ...` before exporting it")
    run = load_run(source)  # validated as a whole: a changed, missing or diverged file is not exported
    state = run.state
    recorded_k = int(run.config.get("top_k", top_k))
    if top_k > recorded_k:
        raise ConfigError(f"--top-k {top_k} is more than the {recorded_k} top neurons {source} recorded per layer; "
                          f"use --top-k {recorded_k} or less")
    target = export_target(source, dest, run.config)
    check_destination(target, run.config, replace)
    with_ablation = ablation and (source / CHECKPOINT_INDEX).exists()
    if with_ablation:
        require_checkpoint(source, int(state["epochs_done"]),
                           "The ablation needs the final weights: restore the file, or export with --no-ablation.")
    target.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".export"))
    try:
        for name in (METRICS_FILE, LABELS_FILE, PROBE_FILE, TEST_CORRECT_FILE):
            if (source / name).exists():
                shutil.copyfile(source / name, build / name)
        kept = thin_epochs(run.snapshot_epochs, max_snapshots)
        for epoch in kept:
            arrays = compact_snapshot(run.snapshot(epoch), top_k, last=epoch == kept[-1])
            atomic_write_bytes(snapshot_file(build, epoch), npz_bytes(**arrays))
        state = {**state, "snapshot_epochs": kept, CHECKSUM_MARK: True}
        state["reference"] = {"exported_from_snapshots": run.snapshot_epochs, "top_k": top_k,
                              "class_means_kept": [k for k in KEPT_MEANS + SCHEMA1_MEANS if f"l1_{k}" in arrays],
                              "random_neurons": "last snapshot only", "float16": list(HALF_PRECISION_KEYS),
                              "checkpoints": "not included", "exported": now_iso()}
        state["reference"]["ablation"] = (_store_ablation(source, build, cifar) if with_ablation else
                                          "not computed: " + ("not asked for" if not ablation
                                                              else "the run has no checkpoint"))
        atomic_write_json(build / CONFIG_FILE, state)
        write_checksums(build, {f.relative_to(build).as_posix(): [file_sha256(f)]
                                for f in sorted(build.rglob("*")) if f.is_file()})
        _move_into_place(build, target)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    return target


def check_destination(target: Path, config: dict, replace: bool = False) -> None:
    """Refuse to export over anything but an earlier copy of the same run (unless ``replace``)."""
    if replace or not target.exists():
        return
    remedy = "Export to another --dest, or pass --replace to replace it whole"
    if not (target / CONFIG_FILE).exists():
        if any(target.iterdir()):
            raise RunDirError(f"{target} exists and is not a reference copy. {remedy}.")
        return
    existing = read_json(target / CONFIG_FILE)
    if "reference" not in existing:
        raise RunDirError(f"{target} holds a trained run, not a reference copy: exporting into it would mix two "
                          f"runs. {remedy} (its checkpoints and snapshots are then deleted).")
    diff = config_differences(existing.get("config", {}), config, RESUME_INSENSITIVE_KEYS)
    if diff:
        listed = "; ".join(f"{k}: there {a!r}, exported {b!r}" for k, (a, b) in diff.items())
        raise RunDirError(f"{target} holds the reference copy of another configuration ({listed}). {remedy}.")


def _move_into_place(build: Path, target: Path) -> None:
    """Replace ``target`` (if any) by the folder ``build``, whole."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".replaced"))
        os.replace(target, old / target.name)
    os.replace(build, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _store_ablation(source: Path, target: Path, cifar: "CifarArrays | None") -> dict:
    """Ablate the candidate layer's large-activation neuron (as chapter 05 does) and store it with the copy."""

    layer = ablation_layer(load_run(source))
    table = ablate_neuron(load_run(source), layer, mode=DEFAULT_MODE, n_random=DEFAULT_RANDOM, arrays=cifar)
    write_stored_ablation(table, target)
    return {"file": STORED_ABLATION, "layer": layer, "mode": DEFAULT_MODE, "n_random": DEFAULT_RANDOM,
            "epoch": int(table["epoch"].iloc[0])}


def write_reference_index(dest: str | os.PathLike) -> Path:
    """Index every run under ``dest`` in ``dest/reference.json`` and write each profile's summary tables."""

    dest = Path(dest)
    runs = load_runs(find_runs(dest))
    if not runs:
        raise RunDirError(f"no runs under {dest}; export some first")
    index: dict = {"written": now_iso(), "profiles": {}}
    folder_of = {id(r): r.path.relative_to(dest).parent.parent.as_posix() for r in runs}
    for profile in sorted(set(folder_of.values())):  # a profile, or SWEEP/POINT/profile for a sweep's point
        group = [r for r in runs if folder_of[id(r)] == profile]
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
    if run.profile not in PROFILES:
        return ["profile"]

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
