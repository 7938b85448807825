"""One run directory while it is trained: locked, opened, validated, resumed, recorded, finished.

``RunRecorder`` holds the run directory's lock (``RUN_DIR/.lock``) from opening to the end of
the run or its failure, so a second process on the same directory waits (at most
``DDD_LOCK_TIMEOUT`` seconds, if set) and then finds the run complete, or resumes it. Under the
lock it removes temp files of interrupted writes, checks that an existing directory holds this
configuration, and, on resume, that ``metrics.csv`` and ``test_correct.npz`` match their
recorded checksums, hold every epoch up to the checkpoint and agree with each other, that the
snapshots up to it exist and match theirs, and that the data (labels, probe set, and the
per-channel normalisation, which every training image moves) are those the run started with.

Every file it writes is listed in ``checksums.json`` (its digest recorded before the file is
written, the previous digest kept until the next write), and ``config.json`` carries
``checksummed: true``, so a reader can tell a deleted checksum file from an older run. A run that
stops with ``TrainingDiverged`` is marked ``status: diverged`` (with the epoch and the reason).

It records values, not models: the training loop (``train.driver.train_runs``) evaluates the
model and hands over the rows, the per-image test correctness and the snapshot arrays. The file
layout is documented in ``runs.schema``.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from filelock import FileLock, Timeout

from ddd_support.config import TrainConfig, resume_insensitive_keys, snapshot_epochs
from ddd_support.errors import ConfigError, RunDirError, TrainingDiverged
from ddd_support.files import atomic_write_bytes, file_sha256, json_bytes, now_iso, npz_bytes, read_json, sha256_of
from ddd_support.runs.async_checkpoint import AsyncCheckpointer
from ddd_support.runs.checkpoints import load_checkpoint, save_checkpoint
from ddd_support.runs.schema import (
    CHECKPOINT_INDEX,
    CHECKSUM_MARK,
    CONFIG_FILE,
    LABELS_FILE,
    LOCK_FILE,
    METRICS_FILE,
    PROBE_FILE,
    SCHEMA_VERSION,
    SNAPSHOT_DIR,
    TEMP_GLOB,
    TEST_CORRECT_FILE,
    config_differences,
    encode_test_correct,
    metrics_text,
    provenance,
    read_metrics,
    read_npz,
    read_test_correct,
    recorded_checksums,
    run_directory,
    snapshot_epochs_on_disk,
    snapshot_file,
    snapshot_name,
    verify_checksum,
    write_checksums,
)

log = logging.getLogger("ddd_support")

#: Seconds a process waits for another one's lock on a run directory (unset: for ever).
LOCK_TIMEOUT_ENV = "DDD_LOCK_TIMEOUT"
STATIC_FILES: tuple[str, ...] = (LABELS_FILE, PROBE_FILE)
#: Relative tolerance of the recorded per-channel normalisation on resume: far below what one
#: changed training image moves it by, far above the rounding of the same computation.
NORMALIZATION_RTOL = 1e-9


# --------------------------------------------------------------------------- locking
def lock_timeout() -> float | None:
    """``DDD_LOCK_TIMEOUT`` in seconds; None (wait for ever) when unset, empty or negative."""
    raw = os.environ.get(LOCK_TIMEOUT_ENV, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{LOCK_TIMEOUT_ENV}={raw!r} is not a number of seconds; "
                          "unset it to wait for the lock as long as it takes") from None
    return None if value < 0 else value


def lock_run_dir(run_dir: Path, timeout: float | None = None) -> FileLock:
    """Create ``run_dir`` if need be and hold its lock, waiting up to ``timeout`` seconds (None: for ever)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    lock = FileLock(str(path), timeout=-1)
    try:
        lock.acquire(timeout=0)
        return lock
    except Timeout:
        pass
    log.info("%s is being trained by another process: waiting for its lock %s%s", run_dir, path,
             "" if timeout is None else f" (at most {timeout:g} s)")
    try:
        lock.acquire(timeout=-1 if timeout is None else timeout)
    except Timeout:
        raise RunDirError(f"{run_dir} is being trained by another process (lock {path}); wait for it to "
                          f"finish or stop it, then run again (or unset {LOCK_TIMEOUT_ENV}={timeout:g} to wait "
                          "as long as it takes)") from None
    return lock


def remove_temp_files(run_dir: Path) -> list[Path]:
    """Delete the temp files that interrupted atomic writes left in ``run_dir`` (hold its lock)."""
    stale = [f for folder in (run_dir, run_dir / SNAPSHOT_DIR) for f in folder.glob(TEMP_GLOB) if f.is_file()]
    for f in stale:
        f.unlink(missing_ok=True)
    if stale:
        log.debug("%s: removed %d temp file(s) of interrupted writes", run_dir, len(stale))
    return stale


# --------------------------------------------------------------------------- snapshots




def remove_snapshots_after(run_dir: Path, epoch: int) -> list[int]:
    """Delete the snapshots of epochs after ``epoch`` (they are taken again when those epochs are);
    returns their epochs."""
    removed = [e for e in snapshot_epochs_on_disk(run_dir) if e > epoch]
    for e in removed:
        snapshot_file(run_dir, e).unlink(missing_ok=True)
    return removed


def current_digests(run_dir: Path, required: bool = False) -> dict[str, str]:
    """Per file listed in ``checksums.json`` and present: the digest it has, if listed, else its newest
    listed one (so a changed file stays detectable). ``required``: a missing record is a RunDirError."""
    digests = {}
    for name, listed in recorded_checksums(run_dir, required).items():
        actual = file_sha256(run_dir / name)
        if actual is not None:
            digests[name] = actual if actual in listed else listed[0]
    return digests


# --------------------------------------------------------------------------- state
def state_is_complete(state: dict, epochs: int) -> bool:
    """True if a run directory's ``config.json`` state says it finished ``epochs`` epochs or more."""
    return state.get("status") == "complete" and state.get("epochs_done", -1) >= epochs


def open_state(run_dir: Path, cfg: TrainConfig, device: torch.device) -> dict[str, Any]:
    """The ``config.json`` state to train ``cfg`` in ``run_dir`` (not written): the recorded one if
    complete, else that state marked as resumed, or a new one. Another configuration is refused."""
    path = run_dir / CONFIG_FILE
    wanted = cfg.to_dict()
    if not path.exists():
        leftovers = ([n for n in (METRICS_FILE, TEST_CORRECT_FILE, CHECKPOINT_INDEX, *STATIC_FILES)
                      if (run_dir / n).exists()] + sorted(f.name for f in run_dir.glob("checkpoint_e*.pt"))
                     + ([f"{SNAPSHOT_DIR}/"] if snapshot_epochs_on_disk(run_dir) else []))
        if leftovers:
            raise RunDirError(f"{run_dir} holds {', '.join(leftovers)} but no {CONFIG_FILE}, so which configuration "
                              f"they belong to is unknown; delete {run_dir} to start this run again")
        return {"schema_version": SCHEMA_VERSION, "config": wanted, "status": "running", "epochs_done": 0,
                CHECKSUM_MARK: True,
                "provenance": {**provenance(str(device)), "start_time": now_iso(), "end_time": None},
                "snapshot_epochs": snapshot_epochs(cfg.epochs, cfg.snapshot_dense_until, cfg.snapshot_per_decade)}
    try:
        state = read_json(path)
    except RunDirError as exc:
        raise RunDirError(f"{exc}; delete {run_dir} to start this run again") from None
    if state.get("schema_version") != SCHEMA_VERSION:
        raise RunDirError(f"{path} has schema {state.get('schema_version')}, expected {SCHEMA_VERSION}")
    if not isinstance(state.get("config"), dict) or not isinstance(state.get("provenance"), dict):
        raise RunDirError(f"{path} lacks its config or provenance entry; delete {run_dir} to start this run again")
    diff = config_differences(state["config"], wanted, resume_insensitive_keys(cfg))
    if diff:
        listed = "; ".join(f"{k}: recorded {a!r}, requested {b!r}" for k, (a, b) in diff.items())
        raise RunDirError(f"{run_dir} holds a run with another configuration ({listed}). "
                          "Use another --out or seed, or delete that directory to replace it.")
    if state_is_complete(state, cfg.epochs):
        return state
    before, now = state["provenance"], provenance(str(device))
    changed = [k for k in ("device", "torch_threads", "torch_version")
               if before.get(k) is not None and before.get(k) != now[k]]
    if changed:
        warnings.warn(f"{run_dir} is resumed with another {', '.join(changed)} than it started with: "
                      "the continued run need not be bit-identical to an uninterrupted one "
                      "(recorded under provenance.resumes)")
    resumes = before.get("resumes", []) + [{"time": now_iso(), "device": now["device"],
                                            "torch_threads": now["torch_threads"],
                                            "torch_version": now["torch_version"]}]
    state["config"] = wanted
    state["status"] = "running"
    state.pop("diverged", None)
    state["provenance"] = {**now, **{k: before[k] for k in ("device", "torch_threads", "torch_version",
                                                           "start_time") if k in before},
                           "resumes": resumes}
    return state  # its snapshot_epochs are set once the epoch it resumes from is known (RunRecorder.resume)


def check_static_files(run_dir: Path, files: dict[str, dict[str, np.ndarray]]) -> list[str]:
    """Compare each existing static file with what this configuration produces; returns those missing."""
    missing = []
    for name, arrays in files.items():
        path = run_dir / name
        if not path.exists():
            missing.append(name)
            continue
        advice = (f"Delete {path} (it is written again from the configuration) or delete {run_dir} to start "
                  "this run again.")
        verify_checksum(run_dir, name, advice)
        stored = read_npz(path, advice)
        if set(stored) != set(arrays) or not all(_same_array(stored[k], v) for k, v in arrays.items()):
            raise RunDirError(f"{path} differs from what this configuration makes of the data set: the training "
                              f"data changed since the run started. Train on the data it started with, or start "
                              f"a new run (another --out, or delete {run_dir})")
    return missing


def _same_array(stored: np.ndarray, made: np.ndarray) -> bool:
    """Integers and booleans must match exactly; floats (input statistics) to float tolerance."""
    if stored.shape != made.shape:
        return False
    if np.issubdtype(stored.dtype, np.floating):
        return bool(np.allclose(stored, made, rtol=1e-6, atol=1e-9))
    return bool(np.array_equal(stored, made))


# --------------------------------------------------------------------------- the recorder
class RunRecorder:
    """The bookkeeping of one run directory while ``train.driver.train_runs`` trains it.

    Use as a context manager (or call ``close``): the lock is held from construction until then.
    Then: ``record_data`` (static files), ``resume`` (the validated checkpoint, or None) or
    ``start`` (epoch 0), ``end_epoch`` for each trained epoch, ``finish``.
    """

    def __init__(self, cfg: TrainConfig, out: str | os.PathLike, device: torch.device,
                 timeout: float | None = None) -> None:
        self.cfg, self.device = cfg, device
        self.run_dir = run_directory(out, cfg.profile, cfg.model, cfg.seed)
        self.lock = lock_run_dir(self.run_dir, lock_timeout() if timeout is None else timeout)
        try:
            remove_temp_files(self.run_dir)
            self.state = open_state(self.run_dir, cfg, device)
            self.digests: dict[str, str] = current_digests(self.run_dir, bool(self.state.get(CHECKSUM_MARK))
                                                           and (self.run_dir / CONFIG_FILE).exists())
        except BaseException:
            self.lock.release()
            raise
        self.schedule = set(snapshot_epochs(cfg.epochs, cfg.snapshot_dense_until, cfg.snapshot_per_decade))
        self.rows: list[dict[str, float]] = []
        self.test_correct: list[np.ndarray] = []
        self.n_test: int | None = None
        self.checkpointer = AsyncCheckpointer(pin=True, background=device.type == "cuda")
        self.complete = state_is_complete(self.state, cfg.epochs)
        self._state_written = False
        if self.complete:
            self._log(f"{self.run_dir}: already complete ({self.state['epochs_done']} epochs), nothing to do")

    # ---------------------------------------------------------------- lifetime
    def __enter__(self) -> "RunRecorder":
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        try:
            if isinstance(exc, TrainingDiverged) and not self.complete and self._names_this_run(exc):
                self.mark_diverged(str(exc))
        finally:
            self.close(failing=exc_type is not None)

    def close(self, failing: bool = False) -> None:
        """Finish the checkpoint write in flight and release the lock (its error raised unless ``failing``)."""
        try:
            if failing:
                try:
                    self.checkpointer.wait()
                except Exception:  # already failing: keep the first error
                    pass
            else:
                self.checkpointer.wait()
        finally:
            if self.lock.is_locked:
                self.lock.release(force=True)

    # ---------------------------------------------------------------- before training
    def record_data(self, labels: dict[str, np.ndarray], probe: dict[str, np.ndarray], mean: np.ndarray,
                    std: np.ndarray, source: str) -> None:
        """Write (or, when resuming, verify) ``labels.npz``, ``probe.npz`` and the normalisation; note the source.

        A resumed run whose data changed (another normalisation, labels or probe set) is refused.
        """
        self.n_test = len(labels["test_indices"])
        normalization = {"mean": np.asarray(mean, dtype=float).tolist(), "std": np.asarray(std, dtype=float).tolist()}
        if (self.run_dir / CONFIG_FILE).exists():
            self._check_normalization(normalization)
        missing = check_static_files(self.run_dir, {LABELS_FILE: labels, PROBE_FILE: probe})
        self.state["normalization"] = normalization
        self.state["provenance"]["data_source"] = source
        if not (self.run_dir / CONFIG_FILE).exists():
            self._write_state()
        self._write_files({name: npz_bytes(**arrays) for name, arrays in ((LABELS_FILE, labels), (PROBE_FILE, probe))
                           if name in missing})

    def _check_normalization(self, normalization: dict[str, list[float]]) -> None:
        recorded = self.state.get("normalization")
        if not recorded:
            return
        for key in ("mean", "std"):
            before, now = np.asarray(recorded.get(key, []), dtype=float), np.asarray(normalization[key])
            if before.shape != now.shape or not np.allclose(before, now, rtol=NORMALIZATION_RTOL, atol=0):
                raise RunDirError(
                    f"the training data changed since {self.run_dir} started: the per-channel pixel {key} of its "
                    f"training images was {np.round(before, 6).tolist()}, it is {np.round(now, 6).tolist()} now. "
                    f"Resume it on the data it started with, or start a new run on these data (another --out, or "
                    f"delete {self.run_dir})")

    def resume(self) -> dict[str, Any] | None:
        """The checkpoint to continue from, after checking the records up to it; None to start afresh."""
        cfg, run_dir = self.cfg, self.run_dir
        checkpoint = load_checkpoint(run_dir, map_location=str(self.device))
        if checkpoint is None:
            return None
        start = int(checkpoint["epoch"])
        if start > cfg.epochs:
            raise RunDirError(f"{run_dir} is already trained to epoch {start}, beyond the requested "
                              f"epochs={cfg.epochs}; ask for at least {start} epochs, or use another --out")
        advice = f"Delete {run_dir} to start this run again."
        metrics = read_metrics(run_dir, advice)
        if len(metrics) < start + 1:
            raise RunDirError(f"{run_dir / METRICS_FILE} lacks epochs before the checkpoint (epoch {start}); "
                              f"delete {run_dir} to start this run again")
        metrics = metrics.iloc[:start + 1]
        correct = read_test_correct(run_dir, self.n_test, advice)
        if correct is None or len(correct) < start + 1:
            raise RunDirError(f"{run_dir / TEST_CORRECT_FILE} lacks epochs before the checkpoint "
                              f"(epoch {start}); delete {run_dir} to start this run again")
        correct = correct[:start + 1]
        if np.any(np.abs(correct.mean(axis=1) - metrics["test_acc"].to_numpy()) > 1e-9):
            raise RunDirError(f"{run_dir / TEST_CORRECT_FILE} disagrees with {METRICS_FILE} test_acc before the "
                              f"checkpoint (epoch {start}); delete {run_dir} to start this run again")
        kept = self._check_snapshots_up_to(start)
        self.rows = metrics.to_dict("records")
        self.test_correct = list(correct)
        self.state["snapshot_epochs"] = sorted(set(kept) | {e for e in self.schedule if e > start})
        for e in remove_snapshots_after(run_dir, start):
            self.digests.pop(snapshot_name(e), None)
        for name in (*STATIC_FILES, *(snapshot_name(e) for e in kept)):  # verified: listed from now on
            self.digests.setdefault(name, file_sha256(run_dir / name))
        self.state[CHECKSUM_MARK] = True
        self._write_state()
        self._write_records()  # the records end at the checkpoint, as the snapshots now do
        self._log(f"{run_dir}: resuming after epoch {start}")
        return checkpoint

    def _check_snapshots_up_to(self, start: int) -> list[int]:
        """The recorded snapshot epochs up to ``start``: each must exist and match its checksum."""
        on_disk = snapshot_epochs_on_disk(self.run_dir)
        recorded = self.state.get("snapshot_epochs") or on_disk
        kept = sorted(e for e in recorded if e <= start)
        if not self.state.get(CHECKSUM_MARK):  # recorded before checksums: its list may name untaken epochs
            kept = sorted(set(kept) & set(on_disk))
        advice = f"Restore it from a copy, or delete {self.run_dir} to train this run again."
        missing = [e for e in kept if not snapshot_file(self.run_dir, e).exists()]
        if missing:
            raise RunDirError(f"{self.run_dir} lacks the snapshot(s) of epoch(s) {missing} that it recorded "
                              f"({SNAPSHOT_DIR}/epoch_EEEEE.npz), and continuing cannot take them again. {advice}")
        record = recorded_checksums(self.run_dir)
        for e in kept:
            verify_checksum(self.run_dir, snapshot_name(e), advice, record=record)
        return kept

    def start(self, row: dict[str, float], correct: np.ndarray, snapshot: dict[str, np.ndarray]) -> None:
        """Record epoch 0 (the initialised model) of a run that starts afresh."""
        self.state["snapshot_epochs"] = sorted(self.schedule)
        self._write_state()
        for e in remove_snapshots_after(self.run_dir, -1):
            self.digests.pop(snapshot_name(e), None)
        self.rows, self.test_correct = [row], [correct]
        self._write_records({snapshot_name(0): npz_bytes(epoch=np.int64(0), **snapshot)})

    # ---------------------------------------------------------------- while training
    def wants_snapshot(self, epoch: int) -> bool:
        """True if the schedule takes a snapshot after ``epoch``."""
        return epoch in self.schedule

    def end_epoch(self, epoch: int, row: dict[str, float], correct: np.ndarray,
                  snapshot: dict[str, np.ndarray] | None, checkpoint_state: Callable[[], dict]) -> dict[str, float]:
        """Record epoch ``epoch``: its snapshot (if any), metrics row and test correctness, and a checkpoint
        if one is due (``checkpoint_state()`` gives it); returns the row."""
        self.rows.append(row)
        self.test_correct.append(correct)
        self._write_records({} if snapshot is None
                            else {snapshot_name(epoch): npz_bytes(epoch=np.int64(epoch), **snapshot)})
        if epoch % self.cfg.checkpoint_every == 0 or epoch == self.cfg.epochs:
            run_dir = self.run_dir
            self.checkpointer.submit(checkpoint_state(),
                                     lambda state, epoch=epoch: save_checkpoint(run_dir, state, epoch))
        return row

    def finish(self) -> None:
        """Mark the run complete, with its totals (after the last checkpoint is on disk)."""
        self.checkpointer.wait()
        metrics = pd.DataFrame(self.rows)
        state = self.state
        state.update(status="complete", epochs_done=int(metrics["epoch"].max()))
        state["provenance"]["end_time"] = now_iso()
        state["provenance"]["train_seconds_total"] = float(metrics["train_seconds"].sum())
        state["provenance"]["eval_seconds_total"] = float(metrics["eval_seconds"].sum())
        self._write_files({CONFIG_FILE: json_bytes(state)})
        write_checksums(self.run_dir, {name: [d] for name, d in self.digests.items()})
        self.complete = True

    def mark_diverged(self, reason: str) -> None:
        """Record on disk that the run diverged after its last recorded epoch (``status: diverged``)."""
        self.state.update(status="diverged", diverged={"epoch": len(self.rows), "reason": reason, "time": now_iso()})
        self._write_files({CONFIG_FILE: json_bytes(self.state)})

    # ---------------------------------------------------------------- helpers
    def _names_this_run(self, exc: TrainingDiverged) -> bool:
        """True if ``exc`` is about this run (a group of runs stops as a whole when one of them diverges)."""
        return exc.run_dir is not None and Path(exc.run_dir).resolve() == Path(self.run_dir).resolve()

    def _write_records(self, first: dict[str, bytes] | None = None) -> None:
        """Rewrite ``metrics.csv`` and ``test_correct.npz``, after the files in ``first`` (a new snapshot)."""
        self._write_files({**(first or {}),
                           TEST_CORRECT_FILE: encode_test_correct(np.stack(self.test_correct)),
                           METRICS_FILE: metrics_text(self.rows).encode()})

    def _write_files(self, payloads: dict[str, bytes]) -> None:
        """Write files (names relative to the run directory) in order, their checksums first: while they are
        replaced, both digests are listed, so an interrupted write leaves each file matching one."""
        if not payloads:
            return
        new = {name: sha256_of(p) for name, p in payloads.items()}
        listing = {name: [d] for name, d in self.digests.items()}
        listing.update({name: [new[name], self.digests.get(name)] for name in payloads})
        write_checksums(self.run_dir, listing)
        for name, payload in payloads.items():
            atomic_write_bytes(self.run_dir / name, payload)
            self.digests[name] = new[name]

    def _write_state(self) -> None:
        if not self._state_written:
            self._write_files({CONFIG_FILE: json_bytes(self.state)})
            self._state_written = True

    def _log(self, message: str) -> None:
        if self.cfg.progress:
            print(message, flush=True)
