"""Load a run directory (schema in ``ddd_support.runs.schema``) into one validated object.

``load_run`` validates a run directory as a whole: ``config.json``, ``metrics.csv``,
``test_correct.npz``, ``labels.npz``, ``probe.npz`` and every snapshot the config lists must
exist and match their digests in ``checksums.json`` (which a run recorded with one must still
have), and the snapshots must hold the layers and widths the config names. The files are read
once, against one reading of the checksum record; while another process trains the run, a read
that catches it between two writes is simply repeated.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
from filelock import FileLock, Timeout

from ddd_support.config import MODELS, model_widths
from ddd_support.errors import RunDirError
from ddd_support.files import read_json
from ddd_support.runs.schema import LOCK_FILE, snapshot_epochs_on_disk, snapshot_file
from ddd_support.runs.schema import (CHECKSUM_MARK, CONFIG_FILE, LABELS_FILE, METRICS_FILE, PROBE_FILE,
                                     READABLE_SCHEMAS, SNAPSHOT_DIR, epoch_ranges, read_metrics,
                                     read_npz, read_test_correct, read_verified, recorded_checksums, snapshot_name,
                                     verify_checksum)

#: What to do about a damaged or changed file of a finished run.
READ_ADVICE = "Restore the file from a copy, or delete the run directory and train the run again."
#: What to do when a run that is being trained cannot be read consistently.
RUNNING_ADVICE = "The run is being trained by another process right now: read it again later (do not delete it)."
#: Reads of a run in training before giving up, and the pause between them (seconds).
READ_ATTEMPTS, READ_PAUSE = 20, 0.05


@dataclass
class RunData:
    """One run: its configuration, provenance, per-epoch metrics, probe set, labels and snapshots."""

    path: Path
    config: dict[str, Any]
    provenance: dict[str, Any]
    metrics: pd.DataFrame
    snapshot_epochs: list[int]
    probe: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    status: str = "complete"
    state: dict[str, Any] = field(default_factory=dict, repr=False)
    _cache: dict[int, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)
    _extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def model(self) -> str:
        """Model name (mlp3, mlp5 or mlp7)."""
        return str(self.config["model"])

    @property
    def seed(self) -> int:
        return int(self.config["seed"])

    @property
    def profile(self) -> str:
        return str(self.config.get("profile", "custom"))

    @property
    def widths(self) -> tuple[int, ...]:
        """Hidden-layer widths."""
        try:
            return model_widths(self.model, int(self.config.get("base_width", 0)), self.config.get("hidden_widths"))
        except (KeyError, TypeError, ValueError):
            raise RunDirError(f"{self.path / CONFIG_FILE} names no model this package knows ({self.model!r}, "
                              f"base_width {self.config.get('base_width')!r}). {READ_ADVICE}") from None

    @property
    def n_layers(self) -> int:
        """Number of hidden layers."""
        return len(self.widths)

    @property
    def name(self) -> str:
        """Short label such as ``MLP7 seed 0`` (models named as the book names them)."""
        return f"{self.model.upper()} seed {self.seed}"

    def snapshot(self, epoch: int) -> dict[str, np.ndarray]:
        """All arrays of the snapshot taken after ``epoch`` (cached after the first read)."""
        epoch = int(epoch)
        if epoch not in self.snapshot_epochs:
            raise RunDirError(f"{self.path} has no snapshot of epoch {epoch}; "
                              f"snapshots exist for epochs {self.snapshot_epochs}")
        if epoch not in self._cache:
            name = snapshot_name(epoch)
            payload = read_verified(self.path, name, READ_ADVICE, self._extra.get("checksums", {}))
            self._cache[epoch] = read_npz(self.path / name, READ_ADVICE, payload)
        return self._cache[epoch]

    @property
    def last_snapshot_epoch(self) -> int:
        return self.snapshot_epochs[-1]

    @property
    def schema_version(self) -> int:
        return int(self.state.get("schema_version", 1))

    @property
    def test_correct(self) -> np.ndarray | None:
        """Per-image test correctness (epochs + 1, n_test) bool, validated against ``test_acc``;
        None if not recorded."""
        if "test_correct" not in self._extra:
            self._extra["test_correct"] = _read_test_correct(self.path, self.metrics, self.labels, self.status,
                                                             self._extra.get("checksums", {}))
        return self._extra["test_correct"]


def load_run(run_dir: str | os.PathLike) -> RunData:
    """Read and validate a run directory as a whole; a RunDirError names whatever is missing or changed.

    A run another process is training is read again until one reading is consistent; a diverged
    run is an error that says so.
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise RunDirError(f"{path} is not a directory; expected a run directory such as runs/smoke/mlp7/seed0")
    if not (path / CONFIG_FILE).exists():
        raise RunDirError(f"{path} has no config.json, so it is not a run directory "
                          "(expected config.json, metrics.csv, probe.npz, labels.npz and snapshots/)")
    for attempt in range(READ_ATTEMPTS):
        try:
            return _load_once(path)
        except RunDirError as exc:
            if not being_trained(path):
                raise
            if attempt == READ_ATTEMPTS - 1:
                text = str(exc)
                raise RunDirError(text.replace(READ_ADVICE, RUNNING_ADVICE) if READ_ADVICE in text
                                  else f"{text} {RUNNING_ADVICE}") from None
            time.sleep(READ_PAUSE)
    raise AssertionError("unreachable")


def being_trained(path: Path) -> bool:
    """True if a process holds the run directory's lock (it is being trained now)."""
    if not (path / LOCK_FILE).exists():
        return False
    lock = FileLock(str(path / LOCK_FILE), timeout=0)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    except OSError:  # a read-only copy cannot be locked, nor trained
        return False
    lock.release()
    return False


def _load_once(path: Path) -> RunData:
    """One reading of every file of the run directory, checked against one reading of ``checksums.json``."""
    config_path = path / CONFIG_FILE
    payload = config_path.read_bytes()
    try:
        state = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunDirError(f"cannot read {config_path}: {exc}. {READ_ADVICE}") from None
    if not isinstance(state, dict) or state.get("schema_version") not in READABLE_SCHEMAS:
        version = state.get("schema_version") if isinstance(state, dict) else None
        raise RunDirError(f"{config_path} has schema_version {version!r}; this "
                          f"package reads schemas {list(READABLE_SCHEMAS)}. Re-run training with this version.")
    record = recorded_checksums(path, required=bool(state.get(CHECKSUM_MARK)))
    verify_checksum(path, CONFIG_FILE, READ_ADVICE, payload, record)
    for key in ("config", "provenance"):
        if not isinstance(state.get(key), dict):
            raise RunDirError(f"{config_path} lacks the {key!r} entry. {READ_ADVICE}")
    if state.get(CHECKSUM_MARK):
        unlisted = [n for n in (CONFIG_FILE, METRICS_FILE, LABELS_FILE, PROBE_FILE) if not record.get(n)]
        if unlisted:
            raise RunDirError(f"{path}/checksums.json does not list {', '.join(unlisted)}, so they cannot be "
                              f"checked. {READ_ADVICE}")
    status = str(state.get("status", "unknown"))
    if status == "diverged":
        why = state.get("diverged", {})
        raise RunDirError(f"{path} diverged at epoch {why.get('epoch', '?')}: {why.get('reason', 'its loss exploded')} "
                          "It has no results to analyse; train it again with the changes that message suggests.")
    metrics = _read_metrics(path, state, record)
    labels = read_npz(path / LABELS_FILE, READ_ADVICE, read_verified(path, LABELS_FILE, READ_ADVICE, record))
    probe = read_npz(path / PROBE_FILE, READ_ADVICE, read_verified(path, PROBE_FILE, READ_ADVICE, record))
    run = RunData(path=path, config=state["config"], provenance=state["provenance"], metrics=metrics,
                  snapshot_epochs=_snapshot_epochs(path, state, int(metrics["epoch"].max()), record),
                  probe=probe, labels=labels, status=status, state=state)
    run._extra["checksums"] = record
    run._extra["test_correct"] = _read_test_correct(path, metrics, labels, status, record)
    _check_widths(run)
    return run


def load_runs(paths: Iterable[str | os.PathLike]) -> list[RunData]:
    """``load_run`` of each path, in order."""
    return [load_run(p) for p in paths]


def find_runs(root: str | os.PathLike, profile: str | None = None,
              model: str | None = None) -> list[Path]:
    """Run directories under ``root`` (any depth, e.g. root/profile/model/seedN), sorted by model and seed.

    A directory whose run never recorded a metric (no ``metrics.csv``, e.g. it stopped while
    loading data) is not a run yet and is left out.
    """
    root = Path(root)
    if not root.is_dir():
        raise RunDirError(f"{root} is not a directory")
    found = []
    for config_path in root.rglob(CONFIG_FILE):
        if any(part.startswith(".") for part in config_path.relative_to(root).parts):
            continue  # an export in progress, or a hidden folder
        if not (config_path.parent / METRICS_FILE).exists():
            continue
        cfg = read_json(config_path).get("config", {})
        if profile is not None and cfg.get("profile") != profile:
            continue
        if model is not None and cfg.get("model") != model:
            continue
        order = MODELS.index(cfg["model"]) if cfg.get("model") in MODELS else len(MODELS)
        found.append((str(cfg.get("profile")), order, int(cfg.get("seed", 0)), config_path.parent))
    return [entry[-1] for entry in sorted(found, key=lambda e: e[:3] + (str(e[3]),))]


def _read_metrics(path: Path, state: dict[str, Any], record: dict[str, list[str]]) -> pd.DataFrame:
    """``metrics.csv`` validated (``schema.read_metrics``); a complete run's up to its ``epochs_done``."""
    done = state.get("epochs_done") if state.get("status") == "complete" else None
    return read_metrics(path, READ_ADVICE, None if done is None else int(done), record)


def _read_test_correct(path: Path, metrics: pd.DataFrame, labels: dict[str, np.ndarray], status: str,
                       record: dict[str, list[str]]) -> np.ndarray | None:
    """The per-image test correctness, covering every epoch of ``metrics`` and reproducing ``test_acc``."""
    correct = read_test_correct(path, len(labels["test_indices"]), READ_ADVICE, record)
    if correct is None:
        return None
    if status != "complete" and len(correct) == len(metrics) + 1:
        correct = correct[:-1]  # read between the two files' writes of a running run
    if len(correct) != len(metrics):
        raise RunDirError(f"{path}/test_correct.npz has {len(correct)} epochs, metrics.csv {len(metrics)}. "
                          f"{READ_ADVICE}")
    mismatch = np.flatnonzero(np.abs(correct.mean(axis=1) - metrics["test_acc"].to_numpy()) > 1e-9)
    if len(mismatch):
        raise RunDirError(f"{path}/test_correct.npz disagrees with metrics.csv test_acc at epochs "
                          f"{epoch_ranges(mismatch.tolist())}. {READ_ADVICE}")
    return correct


def _snapshot_epochs(path: Path, state: dict[str, Any], last_epoch: int, record: dict[str, list[str]]) -> list[int]:
    """The snapshot epochs the config lists up to ``last_epoch`` (those on disk for a config that lists none):
    each must exist and match its checksum. A run recorded before checksums (no ``checksummed`` mark) may
    list epochs an extension never took: of its list, only the last epoch must exist."""
    listed = state.get("snapshot_epochs")
    on_disk = {e for e in snapshot_epochs_on_disk(path) if e <= last_epoch}
    epochs = sorted({int(e) for e in listed if int(e) <= last_epoch} if listed else on_disk)
    if listed and not state.get(CHECKSUM_MARK) and epochs:
        epochs = sorted((set(epochs) & on_disk) | {epochs[-1]})
    missing = [e for e in epochs if not snapshot_file(path, e).exists()]
    if not epochs or missing == epochs:
        raise RunDirError(f"{path} has no activation snapshots ({SNAPSHOT_DIR}/epoch_EEEEE.npz); "
                          "the snapshot analyses need at least one")
    if missing:
        raise RunDirError(f"{path} lacks the snapshot(s) of epoch(s) {epoch_ranges(missing)} that its config.json "
                          f"lists. {READ_ADVICE}")
    for e in epochs:
        verify_checksum(path, snapshot_name(e), READ_ADVICE, record=record)
    return epochs


def _check_widths(run: RunData) -> None:
    """The last snapshot must hold the hidden layers and widths the config names."""
    snapshot = run.snapshot(run.last_snapshot_epoch)
    found = []
    while f"l{len(found) + 1}_absmax" in snapshot:
        found.append(int(np.shape(snapshot[f"l{len(found) + 1}_absmax"])[-1]))
    if tuple(found) != run.widths:
        raise RunDirError(f"{run.path / CONFIG_FILE} describes hidden layers of widths {list(run.widths)}, its "
                          f"snapshots hold widths {found}: the config was changed after training. {READ_ADVICE}")
