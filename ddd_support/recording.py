"""Run directories: atomic writes, the on-disk schema, provenance and checkpoints.

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
    ``status`` (``running`` or ``complete``); ``epochs_done`` (set when the run completes;
    while it runs, ``metrics.csv`` tells how far it got); ``snapshot_epochs`` (the schedule,
    plus any earlier final epoch of a run that was extended); ``normalization`` (per-channel
    ``mean`` and ``std``).
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
    true class), ``noisy_by_noisy`` (grouped by the noisy label) and ``test``; a class with no
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
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import os
import platform
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import CheckpointError, RunDirError

SCHEMA_VERSION = 2
#: Schema versions ``analysis.load_run`` reads (training resumes only ``SCHEMA_VERSION``).
READABLE_SCHEMAS: tuple[int, ...] = (1, 2)
TEST_CORRECT_FILE = "test_correct.npz"
SPLITS: tuple[str, ...] = ("clean", "noisy", "noisy_true", "test")
METRIC_COLUMNS: tuple[str, ...] = (
    "epoch", *(f"{s}_{m}" for s in SPLITS for m in ("loss", "acc")),
    "train_loss", "train_seconds", "eval_seconds",
)
TIMING_COLUMNS: tuple[str, ...] = ("train_seconds", "eval_seconds")


# --------------------------------------------------------------------------- atomic writes
def atomic_write(path: str | os.PathLike, write: Callable[[io.BufferedWriter], None]) -> None:
    """Write a file through ``write(fileobj)`` to a temp file, fsync, then rename into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def atomic_savez(path: str | os.PathLike, compress: bool = True, **arrays: np.ndarray) -> None:
    """Atomically write an ``.npz`` archive (compressed unless ``compress=False``)."""
    save = np.savez_compressed if compress else np.savez
    atomic_write(path, lambda f: save(f, **arrays))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj)}")


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RunDirError(f"cannot read {path}: {exc}") from None


# --------------------------------------------------------------------------- per-image test correctness
def write_test_correct(run_dir: Path, correct: np.ndarray) -> None:
    """Atomically write ``test_correct.npz`` from a bool (epochs + 1, n_test) array."""
    correct = np.asarray(correct, dtype=bool)
    atomic_savez(Path(run_dir) / TEST_CORRECT_FILE, bits=np.packbits(correct, axis=1),
                 n_test=np.int64(correct.shape[1]))


def read_test_correct(run_dir: str | os.PathLike, n_test: int | None = None) -> np.ndarray | None:
    """The bool (epochs + 1, n_test) per-image test correctness of a run; None if not recorded."""
    path = Path(run_dir) / TEST_CORRECT_FILE
    if not path.exists():
        return None
    try:
        with np.load(path) as z:
            bits, stored_n = z["bits"], int(z["n_test"])
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise RunDirError(f"cannot read {path}: {exc}; delete the run directory to train it again") from None
    if n_test is not None and stored_n != n_test:
        raise RunDirError(f"{path} records {stored_n} test images, the run has {n_test}")
    return np.unpackbits(bits, axis=1, count=stored_n).astype(bool)


# --------------------------------------------------------------------------- run directories
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
    import torch

    from . import __version__

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


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- checkpoints
CHECKPOINT_INDEX = "checkpoint.json"
KEEP_CHECKPOINTS = 2


def checkpoint_name(epoch: int) -> str:
    return f"checkpoint_e{epoch:05d}.pt"


def save_checkpoint(run_dir: Path, state: dict[str, Any], epoch: int) -> None:
    """Atomically write a checkpoint, list it in the index, keep only the newest two.

    At every instant the index names only complete files, so a kill at any point
    leaves a loadable checkpoint behind.
    """
    import torch

    buffer = io.BytesIO()
    torch.save({**state, "epoch": epoch}, buffer)
    payload = buffer.getvalue()
    name = checkpoint_name(epoch)
    atomic_write(run_dir / name, lambda f: f.write(payload))
    index_path = run_dir / CHECKPOINT_INDEX
    entries = read_json(index_path).get("checkpoints", []) if index_path.exists() else []
    entries = [e for e in entries if e["epoch"] < epoch]
    entries.append({"epoch": epoch, "file": name, "sha256": hashlib.sha256(payload).hexdigest()})
    kept, dropped = entries[-KEEP_CHECKPOINTS:], entries[:-KEEP_CHECKPOINTS]
    atomic_write_json(index_path, {"checkpoints": kept})
    for entry in dropped:
        (run_dir / entry["file"]).unlink(missing_ok=True)


def load_checkpoint(run_dir: Path, map_location: str = "cpu") -> dict[str, Any] | None:
    """The newest intact checkpoint, falling back to the previous one; None if there is none."""
    import torch

    index_path = run_dir / CHECKPOINT_INDEX
    if not index_path.exists():
        return None
    entries = read_json(index_path).get("checkpoints", [])
    problems = []
    for entry in reversed(entries):
        path = run_dir / entry["file"]
        if not path.exists():
            problems.append(f"{path.name} is missing")
            continue
        payload = path.read_bytes()
        if hashlib.sha256(payload).hexdigest() != entry["sha256"]:
            problems.append(f"{path.name} is damaged (checksum mismatch)")
            continue
        state = torch.load(io.BytesIO(payload), map_location=map_location, weights_only=False)
        if problems:
            warnings.warn(f"{'; '.join(problems)}; resuming from {path.name} (epoch {state['epoch']})")
        return state
    raise CheckpointError(
        f"no intact checkpoint in {run_dir}: {'; '.join(problems) or 'the index lists none'}. "
        f"Delete {run_dir} (or train with another --out) to start this run again.")
