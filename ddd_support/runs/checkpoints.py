"""Checkpoints of a run directory: ``checkpoint_eEEEEE.pt`` (the newest two) and their index.

``checkpoint.json`` lists the files with their epochs and SHA-256 digests, so a damaged file
is detected and the older one used; a missing or unreadable index is rebuilt from the files
that pass their own zip CRC-32 checks and load.
"""

from __future__ import annotations

import hashlib
import io
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from ddd_support.errors import CheckpointError, RunDirError
from ddd_support.files import atomic_write, atomic_write_json, read_json
from ddd_support.runs.schema import CHECKPOINT_INDEX, checkpoint_name

KEEP_CHECKPOINTS = 2




def save_checkpoint(run_dir: Path, state: dict[str, Any], epoch: int) -> None:
    """Atomically write a checkpoint, list it in the index, keep only the newest two.

    At every instant the index names only complete files, so a kill at any point
    leaves a loadable checkpoint behind.
    """
    buffer = io.BytesIO()
    torch.save({**state, "epoch": epoch}, buffer)
    payload = buffer.getvalue()
    name = checkpoint_name(epoch)
    atomic_write(run_dir / name, lambda f: f.write(payload))
    index_path = run_dir / CHECKPOINT_INDEX
    entries = read_json(index_path).get("checkpoints", []) if index_path.exists() else []
    entries = [e for e in entries if e["epoch"] < epoch]
    entries.append({"epoch": epoch, "file": name, "sha256": hashlib.sha256(payload).hexdigest()})
    kept = entries[-KEEP_CHECKPOINTS:]
    atomic_write_json(index_path, {"checkpoints": kept})
    listed = {entry["file"] for entry in kept}
    for path in run_dir.glob("checkpoint_e*.pt"):  # the dropped ones, and any a kill left behind
        if path.name not in listed:
            path.unlink(missing_ok=True)


def require_checkpoint(run_dir: Path, epoch: int, advice: str) -> None:
    """A CheckpointError unless the index lists an intact checkpoint of ``epoch`` (checked by its SHA-256)."""
    index_path = Path(run_dir) / CHECKPOINT_INDEX
    entries = read_json(index_path).get("checkpoints", []) if index_path.exists() else []
    entry = next((e for e in entries if e.get("epoch") == epoch), None)
    path = Path(run_dir) / checkpoint_name(epoch)
    if entry is None or not path.exists():
        raise CheckpointError(f"{run_dir} has no checkpoint of its last epoch {epoch} ({path.name}). {advice}")
    if hashlib.sha256(path.read_bytes()).hexdigest() != entry.get("sha256"):
        raise CheckpointError(f"{path} is damaged (its SHA-256 is not the one {CHECKPOINT_INDEX} recorded). {advice}")


def load_checkpoint(run_dir: Path, map_location: str = "cpu") -> dict[str, Any] | None:
    """The newest intact checkpoint, falling back to the previous one; None if there is none.

    A missing or unreadable index is rebuilt from the checkpoint files themselves
    (``rebuild_checkpoint_index``).
    """
    run_dir = Path(run_dir)
    index_path = run_dir / CHECKPOINT_INDEX
    try:
        entries = read_json(index_path).get("checkpoints", []) if index_path.exists() else None
    except RunDirError:
        entries = None
    if entries is None:
        return rebuild_checkpoint_index(run_dir, map_location)
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


def rebuild_checkpoint_index(run_dir: Path, map_location: str = "cpu") -> dict[str, Any] | None:
    """Write ``checkpoint.json`` anew from the checkpoint files that are intact; return the newest state.

    A file counts as intact if every member passes its zip CRC-32 check (``torch.save`` writes
    them), it loads, and it holds the epoch its name says. None if there is no checkpoint file;
    a CheckpointError if there are files but none is intact.
    """
    files = sorted(run_dir.glob("checkpoint_e*.pt"), reverse=True)
    if not files:
        return None
    intact: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for path in files:
        state = _verified_checkpoint(path, map_location)
        if state is not None:
            intact.append(({"epoch": int(state["epoch"]), "file": path.name,
                            "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}, state))
        if len(intact) == KEEP_CHECKPOINTS:
            break
    if not intact:
        raise CheckpointError(f"{run_dir / CHECKPOINT_INDEX} is missing or unreadable and none of "
                              f"{', '.join(f.name for f in files)} is intact. Delete {run_dir} (or train with "
                              "another --out) to start this run again.")
    atomic_write_json(run_dir / CHECKPOINT_INDEX, {"checkpoints": [entry for entry, _ in reversed(intact)]})
    warnings.warn(f"{run_dir / CHECKPOINT_INDEX} was missing or unreadable: rebuilt from "
                  f"{', '.join(entry['file'] for entry, _ in intact)} (checked by their CRC-32 checksums "
                  f"and by loading); resuming from epoch {intact[0][0]['epoch']}")
    return intact[0][1]


def _verified_checkpoint(path: Path, map_location: str) -> dict[str, Any] | None:
    """The state in checkpoint file ``path`` if it passes its CRC checks, loads and names its epoch; else None."""
    try:
        payload = path.read_bytes()
        with zipfile.ZipFile(io.BytesIO(payload)) as archive:
            if archive.testzip() is not None:
                return None
        state = torch.load(io.BytesIO(payload), map_location=map_location, weights_only=False)
    except Exception:  # any failure to read or unpickle means: not intact
        return None
    epoch = path.stem.removeprefix("checkpoint_e")
    if not isinstance(state, dict) or not epoch.isdigit() or state.get("epoch") != int(epoch):
        return None
    return state
