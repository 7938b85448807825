"""Run directories: the on-disk schema (every file name, written down once), its readers, provenance.

Schema of one run directory (``<out>/<profile>/<model>/seed<seed>/``), version 2
-------------------------------------------------------------------------------
(Version 1, still read, lacks ``test_correct.npz``, ``clean_half``, ``pc`` and the
per-image and random-neuron probe arrays, and its class means are over the probe set only.)

``config.json``
    ``schema_version``; ``config`` (the resolved TrainConfig); ``provenance`` (package
    version, git commit, torch/numpy/python versions, device, device name, torch threads,
    data source, start and end time, ``train_seconds_total`` and ``eval_seconds_total``; the
    device, threads and torch version are those the run started with, and ``resumes`` lists
    each later continuation with its own);
    ``status`` (``running``, ``complete``, or ``diverged``, with a ``diverged`` entry: the
    ``epoch`` whose training loss exploded and the ``reason``); ``epochs_done`` (set when the
    run completes; while it runs, ``metrics.csv`` tells how far it got); ``snapshot_epochs``
    (the schedule, plus any earlier final epoch of a run that was extended: every one up to
    the last recorded epoch must exist); ``normalization`` (per-channel ``mean`` and ``std``
    of the run's training images on the [0, 1] scale: a fingerprint of its pixel data, compared
    on resume, so a run never continues on other images); ``checksummed`` (true: the run records
    every file's digest in ``checksums.json``, which must then be present).
``metrics.csv``
    One row per epoch from 0 (the initialised model, before any step) to ``epochs_done``.
    Columns: ``epoch``; for each split S in ``clean``, ``noisy``, ``noisy_true``, ``test``
    the mean cross-entropy ``S_loss`` and accuracy ``S_acc`` over *all* samples of the
    split; ``train_loss`` (mean mini-batch loss of the epoch, NaN at epoch 0);
    ``train_seconds`` and ``eval_seconds`` (wall time, the only non-deterministic columns).
    Splits: ``clean`` = training samples whose label was kept; ``noisy`` = training samples
    whose label was replaced, scored against the noisy label they were trained on;
    ``noisy_true`` = the same samples scored against their original label; ``test``.
``test_correct.npz``
    ``bits`` (epochs + 1, ceil(n_test / 8)) uint8: row e is ``np.packbits`` of the per-image
    correctness of the model after epoch e on the test set (in ``test_indices`` order);
    ``n_test``. The row means equal ``metrics.csv``'s ``test_acc`` (checked when read).
``labels.npz``
    ``train_indices`` and ``test_indices`` (the subset of CIFAR-10 used), ``original`` and
    ``noisy`` training labels, ``noisy_mask``; ``clean_half`` (1 or 2 for the two disjoint
    random halves of each class's clean images that the separation baseline compares, each
    the size of the class's noisy group; 0 for the rest).
``probe.npz``
    The fixed probe set used by every snapshot: ``group`` (0 clean train, 1 noisy train,
    2 test), ``index`` (row in the train or test subset), ``label`` (true class),
    ``noisy_label`` (the trained-on label; equals ``label`` for clean and test samples),
    input statistics on the [0, 1] pixel scale: ``brightness`` (mean over pixels),
    ``contrast`` (pixel standard deviation), ``channel_mean`` (P, 3), ``pc`` (P, 5): scores
    on the five leading principal components of the training images.
``snapshots/epoch_EEEEE.npz``
    For each hidden layer ``l`` (1-based) with width W, over *all* images of a group:
    ``l{l}_mean_G`` (10, W), the mean post-ReLU activation per class for G in ``clean``,
    ``clean_a``, ``clean_b`` (the two clean halves of ``clean_half``), ``noisy`` (grouped by
    true class), ``noisy_by_noisy`` (grouped by the noisy label), ``test`` and ``unseen``
    (images the run never trains on, as many per class as its noisy group: training images
    outside the run's subset where ``n_train`` takes one, else test images; the unseen-image
    control of the separation index; runs before it lack this group); a class with no
    image is NaN; ``count_G`` (10,) the images per class. Then, on the P probe samples:
    ``l{l}_absmax`` and ``l{l}_pre_absmax`` (W,): per-neuron max |a| over the probe set,
    post- and pre-ReLU; ``l{l}_median_abs`` and ``l{l}_median_abs_nonzero`` (scalars):
    median |a| (post-ReLU) over all probe samples x neurons, and over the non-zero ones (the lower
    median, as ``torch.median`` gives, for an even count);
    ``l{l}_top_idx``, ``l{l}_top_val`` (k,): the k neurons of largest ``absmax``;
    ``l{l}_top_act``, ``l{l}_top_pre`` (P, k): their post- and pre-ReLU activations on each
    probe sample; per image ``l{l}_img_top`` (P,) its largest |a| in the layer,
    ``l{l}_img_argmax`` (P,) the neuron that attains it, ``l{l}_img_median_nonzero`` (P,) the
    median of its non-zero |a| (0 if none); ``l{l}_rand_idx`` (R,) and ``l{l}_rand_act`` (P, R)
    a fixed random set of neurons and their activations (the controls). Also ``epoch`` and
    ``logits`` (P, 10).
``checkpoint_eEEEEE.pt`` (the newest two) and ``checkpoint.json``
    Model + optimizer state after epoch EEEEE; ``checkpoint.json`` lists the files with
    their epochs and SHA-256 digests, so a damaged file is detected and the older one used.
    A missing or unreadable ``checkpoint.json`` is rebuilt from the checkpoint files that pass
    their own zip CRC-32 checks and load.
``checksums.json``
    The SHA-256 of every file the run wrote (``config.json``, ``metrics.csv``,
    ``test_correct.npz``, ``labels.npz``, ``probe.npz``, ``snapshots/epoch_EEEEE.npz``; in a
    reference copy also its ablation files), keyed by the path inside the run directory: for
    each file a list of the digest of its newest version and, while it is being replaced, of
    the version before. It is written before the files, so an interrupted write leaves each
    file matching one listed digest; a file that matches none was changed after training and
    is refused on resume and when read. A run marked ``checksummed`` without it is refused.
    Run directories without it (older ones, the committed reference) are checked for structure
    only: ``metrics.csv`` holds every column, epochs 0, 1, 2... in order, and a number in every
    cell (``train_loss`` may be empty at epoch 0; the ``clean``, ``noisy`` and ``noisy_true``
    columns in every row when the split has no image), and the snapshots hold the widths the
    config names.
``.lock``
    Held (``filelock``) by the process that trains the run, from opening the directory to the
    end of the run or its failure; another process waits for it (``DDD_LOCK_TIMEOUT`` seconds
    at most, if set), then finds the run complete or resumes it. Temp files ``.NAME.*.tmp`` of
    interrupted atomic writes are removed when a training process opens the directory.
"""

from __future__ import annotations

import io
import os
import platform
import subprocess
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
import torch

from ddd_support import __version__
from ddd_support.errors import RunDirError
from ddd_support.files import NPZ_ERRORS, atomic_write, atomic_write_json, file_sha256, read_json, sha256_of

SCHEMA_VERSION = 2
#: Schema versions ``runs.reader.load_run`` reads (training resumes only ``SCHEMA_VERSION``).
READABLE_SCHEMAS: tuple[int, ...] = (1, 2)
TEST_CORRECT_FILE = "test_correct.npz"
SPLITS: tuple[str, ...] = ("clean", "noisy", "noisy_true", "test")
METRIC_COLUMNS: tuple[str, ...] = (
    "epoch", *(f"{s}_{m}" for s in SPLITS for m in ("loss", "acc")),
    "train_loss", "train_seconds", "eval_seconds",
)
TIMING_COLUMNS: tuple[str, ...] = ("train_seconds", "eval_seconds")
#: Columns that are empty (NaN) in every row when the split has no sample (no label replaced, or
#: every label replaced).
EMPTY_SPLIT_COLUMNS: tuple[str, ...] = tuple(f"{s}_{m}" for s in ("clean", "noisy", "noisy_true")
                                             for m in ("loss", "acc"))
METRICS_FILE = "metrics.csv"
CHECKSUM_FILE = "checksums.json"
CONFIG_FILE = "config.json"
LABELS_FILE = "labels.npz"
PROBE_FILE = "probe.npz"
SNAPSHOT_DIR = "snapshots"
#: ``config.json`` key (true) of a run that records every file's digests in ``checksums.json``.
CHECKSUM_MARK = "checksummed"
CHECKPOINT_INDEX = "checkpoint.json"
LOCK_FILE = ".lock"
#: The names ``atomic_write`` gives its temp files: ``.NAME.<random>.tmp`` beside NAME.
TEMP_GLOB = ".*.tmp"












# --------------------------------------------------------------------------- checksums
def write_checksums(run_dir: Path, digests: dict[str, list[str]]) -> None:
    """Atomically record, per file name, the digests a file may have (newest first)."""
    atomic_write_json(Path(run_dir) / CHECKSUM_FILE, {name: [d for d in ds if d] for name, ds in digests.items()})


def recorded_checksums(run_dir: Path, required: bool = False) -> dict[str, list[str]]:
    """The digests of ``checksums.json``; {} for a run directory written before it existed.

    ``required`` (the run's ``config.json`` carries ``CHECKSUM_MARK``): a missing file is a RunDirError,
    not a reason to trust the files.
    """
    path = Path(run_dir) / CHECKSUM_FILE
    if not path.exists():
        if required:
            raise RunDirError(f"{run_dir} has no {CHECKSUM_FILE}, though it was recorded with one: its files "
                              "cannot be checked, so they are not used. Restore the file from a copy, or delete "
                              "the run directory and train the run again.")
        return {}
    record = read_json(path)
    if not isinstance(record, dict) or not all(isinstance(v, list) for v in record.values()):
        raise RunDirError(f"{path} is not a checksum record. Restore it from a copy, or delete the run directory "
                          "and train the run again.")
    return record


def verify_checksum(run_dir: Path, name: str, advice: str, payload: bytes | None = None,
                    record: dict[str, list[str]] | None = None) -> None:
    """Raise RunDirError if ``run_dir/name`` (or ``payload``, its bytes) matches none of its recorded
    digests (in ``record``, else read from ``checksums.json``); none recorded: pass."""
    allowed = (recorded_checksums(run_dir) if record is None else record).get(name)
    if not allowed:
        return
    path = Path(run_dir) / name
    digest = sha256_of(payload) if payload is not None else file_sha256(path)
    if digest is None:
        raise RunDirError(f"{path} is missing, though {CHECKSUM_FILE} records it. {advice}")
    if digest not in allowed:
        raise RunDirError(f"{path} does not match its SHA-256 recorded in {CHECKSUM_FILE} when it was written: "
                          f"the file was changed after training. {advice}")


def read_verified(run_dir: Path, name: str, advice: str, record: dict[str, list[str]]) -> bytes:
    """The bytes of ``run_dir/name``, checked against ``record``; a missing file is a RunDirError."""
    path = Path(run_dir) / name
    try:
        payload = path.read_bytes()
    except FileNotFoundError:
        raise RunDirError(f"{path.parent} has no {path.name}. {advice}") from None
    verify_checksum(run_dir, name, advice, payload, record)
    return payload


# --------------------------------------------------------------------------- npz archives
def read_npz(path: str | os.PathLike, advice: str, payload: bytes | None = None) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file (or of ``payload``, its bytes); a missing or damaged one is a
    RunDirError ending with ``advice``."""
    path = Path(path)
    if payload is None and not path.exists():
        raise RunDirError(f"{path.parent} has no {path.name}. {advice}")
    try:
        with np.load(io.BytesIO(payload) if payload is not None else path) as z:
            return {k: z[k] for k in z.files}
    except NPZ_ERRORS as exc:
        raise RunDirError(f"cannot read {path}, it is damaged ({type(exc).__name__}: {exc}). {advice}") from None


# --------------------------------------------------------------------------- metrics.csv
def metrics_text(rows: Iterable[dict[str, float]]) -> str:
    """``metrics.csv`` of the given rows, floats written to round-trip exactly."""
    return pd.DataFrame(list(rows), columns=list(METRIC_COLUMNS)).to_csv(index=False, float_format="%.17g")


def read_metrics(run_dir: str | os.PathLike, advice: str, last_epoch: int | None = None,
                 record: dict[str, list[str]] | None = None) -> pd.DataFrame:
    """``metrics.csv`` checked for structure (``check_metrics``), then against ``checksums.json``
    (``record`` if given, as read with the other files of one consistent read); sorted by epoch.

    ``last_epoch``: an epoch the file must reach (a complete run's ``epochs_done``). Any problem
    is a RunDirError naming the file and ending with ``advice``.
    """
    path = Path(run_dir) / METRICS_FILE
    try:
        payload = path.read_bytes()
    except FileNotFoundError:
        raise RunDirError(f"{run_dir} has no {METRICS_FILE}; the run never finished its first evaluation. "
                          f"{advice}") from None
    try:
        metrics = pd.read_csv(io.BytesIO(payload))
    except ValueError as exc:  # ParserError, EmptyDataError, UnicodeDecodeError
        raise RunDirError(f"cannot read {path}: {exc}. {advice}") from None
    metrics = check_metrics(metrics, path, advice, last_epoch)
    verify_checksum(Path(run_dir), METRICS_FILE, advice, payload, record)
    return metrics


def check_metrics(metrics: pd.DataFrame, path: Path, advice: str, last_epoch: int | None = None) -> pd.DataFrame:
    """The structure rules of ``metrics.csv``; returns it sorted by epoch.

    Every column; every epoch from 0 to the last (and to ``last_epoch``) once; a number in every
    cell, except ``train_loss`` at epoch 0 and the ``EMPTY_SPLIT_COLUMNS`` when empty in every row.
    """
    missing = [c for c in METRIC_COLUMNS if c not in metrics.columns]
    if missing:
        raise RunDirError(f"{path} lacks the columns {missing}. {advice}")
    if metrics.empty:
        raise RunDirError(f"{path} has no rows. {advice}")
    for column in METRIC_COLUMNS:
        if not pd.api.types.is_numeric_dtype(metrics[column]):
            raise RunDirError(f"{path} has a value that is not a number in column {column}. {advice}")
    epochs = metrics["epoch"]
    if epochs.isna().any() or not (epochs == epochs.round()).all() or (epochs < 0).any():
        raise RunDirError(f"{path} has an epoch that is not a whole number >= 0. {advice}")
    if epochs.duplicated().any():
        raise RunDirError(f"{path} lists some epochs more than once. {advice}")
    last = int(max(epochs.max(), last_epoch if last_epoch is not None else 0))
    gaps = sorted(set(range(last + 1)) - {int(e) for e in epochs})
    if gaps:
        raise RunDirError(f"{path} is missing epochs {epoch_ranges(gaps)} of 0..{last}. {advice}")
    metrics = metrics.sort_values("epoch", ignore_index=True)
    for column in METRIC_COLUMNS[1:]:
        empty = metrics[column].isna().to_numpy().copy()
        if column == "train_loss":
            empty[0] = False
        elif column in EMPTY_SPLIT_COLUMNS and empty.all():
            continue
        if empty.any():
            raise RunDirError(f"{path} has no value in column {column} at epoch(s) "
                              f"{epoch_ranges(metrics['epoch'][empty])} (a cut or edited row). {advice}")
    return metrics


def epoch_ranges(values: Iterable) -> str:
    """[1, 2, 3, 7] -> '1-3, 7' (whole numbers only)."""
    ints = [int(v) for v in values if float(v).is_integer()]
    if not ints:
        return "none"
    parts, start = [], ints[0]
    for prev, cur in zip(ints, ints[1:] + [None]):
        if cur != prev + 1:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
            start = cur
    return ", ".join(parts)


# --------------------------------------------------------------------------- per-image test correctness
def encode_test_correct(correct: np.ndarray) -> bytes:
    """The ``test_correct.npz`` file of a bool (epochs + 1, n_test) array."""
    correct = np.asarray(correct, dtype=bool)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, bits=np.packbits(correct, axis=1), n_test=np.int64(correct.shape[1]))
    return buffer.getvalue()


def write_test_correct(run_dir: Path, correct: np.ndarray) -> None:
    """Atomically write ``test_correct.npz`` from a bool (epochs + 1, n_test) array."""
    payload = encode_test_correct(correct)
    atomic_write(Path(run_dir) / TEST_CORRECT_FILE, lambda f: f.write(payload))


def read_test_correct(run_dir: str | os.PathLike, n_test: int | None = None,
                      advice: str = "Delete the run directory to train it again.",
                      record: dict[str, list[str]] | None = None) -> np.ndarray | None:
    """The bool (epochs + 1, n_test) per-image test correctness of a run; None if not recorded.

    Checked against ``checksums.json`` (``record`` if given) when recorded there.
    """
    path = Path(run_dir) / TEST_CORRECT_FILE
    try:
        payload = path.read_bytes()
    except FileNotFoundError:
        if (recorded_checksums(Path(run_dir)) if record is None else record).get(TEST_CORRECT_FILE):
            raise RunDirError(f"{path} is missing, though {CHECKSUM_FILE} records it. {advice}") from None
        return None
    verify_checksum(Path(run_dir), TEST_CORRECT_FILE, advice, payload, record)
    z = read_npz(path, advice, payload)
    try:
        bits, stored_n = z["bits"], int(z["n_test"])
        correct = np.unpackbits(bits, axis=1, count=stored_n).astype(bool)
    except (KeyError, ValueError, TypeError) as exc:
        raise RunDirError(f"cannot read {path} ({type(exc).__name__}: {exc}). {advice}") from None
    if n_test is not None and stored_n != n_test:
        raise RunDirError(f"{path} records {stored_n} test images, the run has {n_test}. {advice}")
    return correct


# --------------------------------------------------------------------------- run directories
def checkpoint_name(epoch: int) -> str:
    return f"checkpoint_e{epoch:05d}.pt"


def snapshot_file(run_dir: str | os.PathLike, epoch: int) -> Path:
    """``RUN_DIR/snapshots/epoch_EEEEE.npz``."""
    return Path(run_dir) / snapshot_name(epoch)


def snapshot_epochs_on_disk(run_dir: str | os.PathLike) -> list[int]:
    """The epochs of the snapshot files in ``run_dir``, sorted."""
    folder = Path(run_dir) / SNAPSHOT_DIR
    names = (f.stem.split("_", 1) for f in folder.glob("epoch_*.npz")) if folder.is_dir() else ()
    return sorted(int(n[1]) for n in names if len(n) == 2 and n[1].isdigit())


def snapshot_name(epoch: int) -> str:
    """``snapshots/epoch_EEEEE.npz``: a snapshot's path inside its run directory (and its checksum name)."""
    return f"{SNAPSHOT_DIR}/epoch_{int(epoch):05d}.npz"


def run_directory(out: str | os.PathLike, profile: str, model: str, seed: int) -> Path:
    """Where the run of (profile, model, seed) lives under ``out``."""
    return Path(out) / profile / model / f"seed{seed}"


def config_differences(stored: dict[str, Any], wanted: dict[str, Any],
                       ignore: frozenset[str]) -> dict[str, tuple[Any, Any]]:
    """Keys whose values differ between two config dicts, ignoring ``ignore``."""
    keys = (set(stored) | set(wanted)) - ignore
    return {k: (stored.get(k), wanted.get(k)) for k in sorted(keys) if stored.get(k) != wanted.get(k)}


def provenance(device: str) -> dict[str, Any]:
    """Versions and environment facts recorded with every run."""

    return {
        "package_version": __version__,
        "git_commit": _git_commit(),
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "device": device,
        "device_name": torch.cuda.get_device_name() if device.startswith("cuda") else platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
    }


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                                text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None
