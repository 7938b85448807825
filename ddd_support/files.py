"""Files written atomically (temp file, fsync, rename), JSON read back, SHA-256 digests, timestamps.

The lowest layer of the package: anything that writes a file goes through ``atomic_write``, so a
kill leaves the old file or the new one, never half of one; a full disk is a ``DiskFullError``.
"""

from __future__ import annotations

import datetime as _dt
import errno
import hashlib
import io
import json
import os
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ddd_support.errors import DiskFullError, RunDirError

#: Exceptions ``np.load`` raises on a damaged archive (some only when a member is read).
NPZ_ERRORS = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error)


_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def atomic_write(path: str | os.PathLike, write: Callable[[io.BufferedWriter], None]) -> None:
    """Write a file through ``write(fileobj)`` to a temp file, fsync, then rename into place.

    A full disk (or quota) raises ``DiskFullError``, which says what to do.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
            raise DiskFullError(f"cannot write {path}: {exc.strerror}. Free some disk space and run the "
                                "same command again (a training run resumes from its last checkpoint; "
                                "every file written before is intact)") from None
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def atomic_write_bytes(path: str | os.PathLike, payload: bytes) -> None:
    """Atomically write ``payload`` (whose digest a caller may have recorded first)."""
    atomic_write(path, lambda f: f.write(payload))


def json_bytes(obj: Any) -> bytes:
    """The bytes ``atomic_write_json`` writes for ``obj``."""
    return (json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n").encode()


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, json_bytes(obj))


def npz_bytes(compress: bool = True, **arrays: np.ndarray) -> bytes:
    """The bytes of an ``.npz`` archive of ``arrays`` (compressed unless ``compress=False``)."""
    buffer = io.BytesIO()
    (np.savez_compressed if compress else np.savez)(buffer, **arrays)
    return buffer.getvalue()


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


def sha256_of(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def file_sha256(path: str | os.PathLike) -> str | None:
    """The SHA-256 of a file's bytes; None if it does not exist."""
    try:
        return sha256_of(Path(path).read_bytes())
    except FileNotFoundError:
        return None


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
