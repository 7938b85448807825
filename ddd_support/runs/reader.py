"""Load a run directory (schema in ``ddd_support.runs.schema``) into one validated object."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from ddd_support.config import MODELS, model_widths
from ddd_support.errors import RunDirError
from ddd_support.files import read_json
from ddd_support.runs.schema import READABLE_SCHEMAS, epoch_ranges, read_metrics, read_npz, read_test_correct
from ddd_support.runs.recorder import SNAPSHOT_DIR, snapshot_epochs_on_disk, snapshot_file

#: What to do about a damaged or changed file of a finished run.
READ_ADVICE = "Restore the file from a copy, or delete the run directory and train the run again."


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
        return model_widths(self.model, int(self.config.get("base_width", 0)), self.config.get("hidden_widths"))

    @property
    def n_layers(self) -> int:
        """Number of hidden layers."""
        return len(self.widths)

    @property
    def name(self) -> str:
        """Short label such as ``mlp7 seed 0``."""
        return f"{self.model} seed {self.seed}"

    def snapshot(self, epoch: int) -> dict[str, np.ndarray]:
        """All arrays of the snapshot taken after ``epoch`` (cached after the first read)."""
        epoch = int(epoch)
        if epoch not in self.snapshot_epochs:
            raise RunDirError(f"{self.path} has no snapshot of epoch {epoch}; "
                              f"snapshots exist for epochs {self.snapshot_epochs}")
        if epoch not in self._cache:
            self._cache[epoch] = read_npz(snapshot_file(self.path, epoch), READ_ADVICE)
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
            correct = read_test_correct(self.path, len(self.labels["test_indices"]), READ_ADVICE)
            if correct is not None:
                if self.status != "complete" and len(correct) == len(self.metrics) + 1:
                    correct = correct[:-1]  # read between the two files' writes of a running run
                _check_test_correct(self.path, correct, self.metrics)
            self._extra["test_correct"] = correct
        return self._extra["test_correct"]


def load_run(run_dir: str | os.PathLike) -> RunData:
    """Read and validate a run directory; a RunDirError names whatever is missing."""
    path = Path(run_dir)
    if not path.is_dir():
        raise RunDirError(f"{path} is not a directory; expected a run directory such as runs/smoke/mlp7/seed0")
    config_path = path / "config.json"
    if not config_path.exists():
        raise RunDirError(f"{path} has no config.json, so it is not a run directory "
                          "(expected config.json, metrics.csv, probe.npz, labels.npz and snapshots/)")
    state = read_json(config_path)
    if state.get("schema_version") not in READABLE_SCHEMAS:
        raise RunDirError(f"{config_path} has schema_version {state.get('schema_version')!r}; this "
                          f"package reads schemas {list(READABLE_SCHEMAS)}. Re-run training with this version.")
    for key in ("config", "provenance"):
        if key not in state:
            raise RunDirError(f"{config_path} lacks the {key!r} entry")
    metrics = _read_metrics(path, state)
    return RunData(
        path=path, config=state["config"], provenance=state["provenance"], metrics=metrics,
        snapshot_epochs=_snapshot_epochs(path, int(metrics["epoch"].max())),
        probe=read_npz(path / "probe.npz", READ_ADVICE), labels=read_npz(path / "labels.npz", READ_ADVICE),
        status=str(state.get("status", "unknown")), state=state,
    )


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
    for config_path in root.rglob("config.json"):
        if not (config_path.parent / "metrics.csv").exists():
            continue
        cfg = read_json(config_path).get("config", {})
        if profile is not None and cfg.get("profile") != profile:
            continue
        if model is not None and cfg.get("model") != model:
            continue
        order = MODELS.index(cfg["model"]) if cfg.get("model") in MODELS else len(MODELS)
        found.append((str(cfg.get("profile")), order, int(cfg.get("seed", 0)), config_path.parent))
    return [entry[-1] for entry in sorted(found, key=lambda e: e[:3] + (str(e[3]),))]


def _read_metrics(path: Path, state: dict[str, Any]) -> pd.DataFrame:
    """``metrics.csv`` validated (``recording.read_metrics``); a complete run's up to its ``epochs_done``."""
    done = state.get("epochs_done") if state.get("status") == "complete" else None
    return read_metrics(path, READ_ADVICE, None if done is None else int(done))


def _check_test_correct(path: Path, correct: np.ndarray, metrics: pd.DataFrame) -> None:
    """The recorded per-image correctness must cover every epoch and reproduce ``test_acc``."""
    if len(correct) != len(metrics):
        raise RunDirError(f"{path}/test_correct.npz has {len(correct)} epochs, metrics.csv {len(metrics)}; "
                          "the run directory is damaged: train it again")
    mismatch = np.flatnonzero(np.abs(correct.mean(axis=1) - metrics["test_acc"].to_numpy()) > 1e-9)
    if len(mismatch):
        raise RunDirError(f"{path}/test_correct.npz disagrees with metrics.csv test_acc at epochs "
                          f"{epoch_ranges(mismatch.tolist())}; the run directory is damaged: train it again")


def _snapshot_epochs(path: Path, last_epoch: int) -> list[int]:
    epochs = [e for e in snapshot_epochs_on_disk(path) if e <= last_epoch]
    if not epochs:
        raise RunDirError(f"{path} has no activation snapshots ({SNAPSHOT_DIR}/epoch_EEEEE.npz); "
                          "the snapshot analyses need at least one")
    return epochs

