"""Compact copies of finished runs, small enough to commit as the book's reference results.

A reference run keeps the run-directory layout (so ``analysis.load_run`` reads it) with:
``config.json`` (plus a ``reference`` entry saying what was left out), ``metrics.csv``,
``labels.npz``, ``probe.npz``, and at most ``max_snapshots`` snapshots, thinned evenly in
log-epoch, whose arrays are stored in float16 with only the class means the separation
analysis needs and the activations of the top ``top_k`` neurons. No checkpoints.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from .recording import atomic_savez, atomic_write_json, now_iso, read_json, run_directory

#: Snapshot keys (after the ``l{layer}_`` prefix) kept in a reference run.
KEPT_MEANS: tuple[str, ...] = ("mean_clean", "mean_noisy")
TOP_KEYS: tuple[str, ...] = ("top_idx", "top_val", "top_act", "top_pre")
HALF_PRECISION_KEYS: tuple[str, ...] = ("mean_clean", "mean_noisy", "absmax", "pre_absmax",
                                        "top_val", "top_act", "top_pre", "logits")


def thin_epochs(epochs: list[int], max_count: int) -> list[int]:
    """At most ``max_count`` of ``epochs`` (sorted), spread evenly in log(1 + epoch), first and last kept."""
    epochs = sorted(epochs)
    if len(epochs) <= max_count:
        return epochs
    targets = np.linspace(np.log1p(epochs[0]), np.log1p(epochs[-1]), max_count)
    logs = np.log1p(np.asarray(epochs, dtype=float))
    chosen = {epochs[int(np.argmin(np.abs(logs - t)))] for t in targets}
    return sorted(chosen | {epochs[0], epochs[-1]})


def compact_snapshot(snapshot: dict[str, np.ndarray], top_k: int) -> dict[str, np.ndarray]:
    """The reference form of one snapshot: fewer class means, top ``top_k`` neurons, float16 arrays."""
    out = {}
    for key, value in snapshot.items():
        name = key.split("_", 1)[1] if key.startswith("l") and "_" in key and key[1].isdigit() else key
        if name.startswith("mean_") and name not in KEPT_MEANS:
            continue
        if name in TOP_KEYS:
            value = value[..., :top_k]
        if name in HALF_PRECISION_KEYS:
            value = np.asarray(value, dtype=np.float16)
        out[key] = value
    return out


def export_reference(run_dir: str | os.PathLike, dest: str | os.PathLike, max_snapshots: int = 12,
                     top_k: int = 2) -> Path:
    """Write the compact copy of a complete run under ``dest``; returns its directory."""
    source = Path(run_dir)
    state = read_json(source / "config.json")
    cfg = state["config"]
    target = run_directory(dest, cfg["profile"], cfg["model"], cfg["seed"])
    (target / "snapshots").mkdir(parents=True, exist_ok=True)
    for name in ("metrics.csv", "labels.npz", "probe.npz"):
        shutil.copyfile(source / name, target / name)
    available = sorted(int(f.stem.split("_")[1]) for f in (source / "snapshots").glob("epoch_*.npz"))
    kept = thin_epochs(available, max_snapshots)
    for epoch in kept:
        with np.load(source / "snapshots" / f"epoch_{epoch:05d}.npz") as z:
            arrays = compact_snapshot({k: z[k] for k in z.files}, top_k)
        atomic_savez(target / "snapshots" / f"epoch_{epoch:05d}.npz", **arrays)
    state["snapshot_epochs"] = kept
    state["reference"] = {"exported_from_snapshots": available, "top_k": top_k,
                          "class_means_kept": list(KEPT_MEANS), "float16": list(HALF_PRECISION_KEYS),
                          "checkpoints": "not included", "exported": now_iso()}
    atomic_write_json(target / "config.json", state)
    return target
