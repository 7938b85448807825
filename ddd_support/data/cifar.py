"""CIFAR-10 as tensors: two sources, a decode-once cache, stratified subsets, normalisation.

Sources
-------
* ``torchvision``: ``torchvision.datasets.CIFAR10`` under a root folder (downloaded there
  when ``download=True`` and the machine has internet).
* ``imagefolder``: a tree ``ROOT/{train,test}/<class>/*.jpg|png`` as read by
  ``torchvision.datasets.ImageFolder`` (for example a JPEG copy of CIFAR-10).

The root is an argument or the environment variable ``DDD_DATA_ROOT``; with source
``auto`` a root holding ``train/`` and ``test/`` class folders is read as an image folder,
anything else as a torchvision root. Decoded uint8 arrays of an image folder are cached under
``DDD_CACHE_DIR`` (default ``~/.cache/ddd_support``), never inside the source folder, one file
per source folder, with the folder's fingerprint (``source_fingerprint``: every file's path,
size and modification time, and every folder's): a folder changed since (files renamed, added,
removed, rewritten) is decoded again. One process decodes a folder at a time (a lock beside the cache file); a
cache that cannot be written (full disk) only costs decoding again next time. The torchvision
source reads its pickled batches directly, without a cache.
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from filelock import FileLock
from tqdm.auto import tqdm

from ddd_support.errors import DataError
from ddd_support.files import atomic_savez

log = logging.getLogger("ddd_support")

CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
DATA_ROOT_ENV = "DDD_DATA_ROOT"
CACHE_DIR_ENV = "DDD_CACHE_DIR"
DEFAULT_TORCHVISION_ROOT = Path.home() / ".cache" / "ddd_support" / "torchvision"


@dataclass(frozen=True)
class CifarArrays:
    """The raw dataset: uint8 images (N, 32, 32, 3) and int64 labels (N,)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str

    def __post_init__(self) -> None:
        for name in ("x_train", "x_test"):
            arr = getattr(self, name)
            if arr.ndim != 4 or arr.shape[1:] != (32, 32, 3) or arr.dtype != np.uint8:
                raise DataError(f"{name} must be uint8 (N, 32, 32, 3), got {arr.dtype} {arr.shape}")


def cache_dir() -> Path:
    """Folder for decoded arrays (``DDD_CACHE_DIR`` or ``~/.cache/ddd_support``)."""
    return Path(os.environ.get(CACHE_DIR_ENV) or Path.home() / ".cache" / "ddd_support")


def resolve_root(root: str | os.PathLike | None) -> Path:
    """The data root: the argument, else ``$DDD_DATA_ROOT``, else the default torchvision root."""
    if root:
        return Path(root).expanduser()
    env = os.environ.get(DATA_ROOT_ENV)
    return Path(env).expanduser() if env else DEFAULT_TORCHVISION_ROOT


def is_imagefolder_root(root: Path) -> bool:
    """True if ``root`` holds ``train/`` and ``test/`` folders of class sub-folders."""
    return all((root / split).is_dir() and any(p.is_dir() for p in (root / split).iterdir())
               for split in ("train", "test"))


def _help(root: Path) -> str:
    return (
        f"No CIFAR-10 data found at {root}. Either (1) set {DATA_ROOT_ENV} (or data_root) to an "
        "image-folder copy laid out as ROOT/train/<class>/*.jpg and ROOT/test/<class>/*.jpg, with "
        "data_source=imagefolder or auto; or (2) use data_source=torchvision with a root that holds "
        "cifar-10-batches-py, or let torchvision download it there (needs internet, download=True)."
    )


def load_cifar10(root: str | os.PathLike | None = None, source: str = "auto",
                 download: bool = True, progress: bool = True) -> CifarArrays:
    """Load all of CIFAR-10 as uint8 arrays, decoding once and caching the result."""
    path = resolve_root(root)
    if source == "auto":
        source = "imagefolder" if path.is_dir() and is_imagefolder_root(path) else "torchvision"
    if source not in ("imagefolder", "torchvision"):
        raise DataError(f"unknown data source {source!r}; use auto, imagefolder or torchvision")
    if source == "imagefolder":
        if not (path.is_dir() and is_imagefolder_root(path)):
            raise DataError(_help(path))
        return _cached(path, "imagefolder", lambda: _read_imagefolder(path, progress))
    return _read_torchvision(path, download)


def source_fingerprint(root: Path) -> str:
    """SHA-256 of the sorted relative path, size and mtime (ns) of every file and folder under
    ``root/train`` and ``root/test`` (a folder's mtime changes when entries in it are renamed)."""
    entries: list[str] = []

    def walk(folder: str, rel: str) -> None:
        with os.scandir(folder) as it:
            for entry in it:
                st = entry.stat()
                if entry.is_dir():
                    entries.append(f"{rel}{entry.name}/\t\t{st.st_mtime_ns}")  # renames inside change it
                    walk(entry.path, f"{rel}{entry.name}/")
                elif entry.is_file():
                    entries.append(f"{rel}{entry.name}\t{st.st_size}\t{st.st_mtime_ns}")

    for split in ("train", "test"):
        walk(str(root / split), f"{split}/")
    entries.sort()
    return hashlib.sha256("\n".join(entries).encode()).hexdigest()


def _cache_file(path: Path, source: str) -> Path:
    key = hashlib.sha256(f"{source}:{path.resolve()}".encode()).hexdigest()[:16]
    return cache_dir() / f"cifar10-{source}-{key}.npz"


def _cached(path: Path, source: str, read: Callable[[], CifarArrays]) -> CifarArrays:
    """The arrays of ``path`` from its cache file if that holds the folder's current fingerprint, else
    ``read()`` and cache them (a cache that cannot be written is warned about, not fatal)."""
    file = _cache_file(path, source)
    fingerprint = source_fingerprint(path)
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(f"{file}.lock")
        lock.acquire()
    except OSError as exc:  # a read-only cache folder: its valid cache is still used
        arrays = _read_cache(file, fingerprint, source, remove_damaged=False)
        if arrays is not None:
            return arrays
        warnings.warn(f"cannot use the data cache folder {file.parent} ({exc}); decoding the images "
                      f"without a cache (set {CACHE_DIR_ENV} to a writable folder to keep them)")
        return read()
    try:
        for stale in file.parent.glob(f".{file.name}.*.tmp"):  # of an interrupted cache write
            stale.unlink(missing_ok=True)
        arrays = _read_cache(file, fingerprint, source)
        if arrays is not None:
            return arrays
        arrays = read()
        try:
            atomic_savez(file, compress=False, x_train=arrays.x_train, y_train=arrays.y_train,
                         x_test=arrays.x_test, y_test=arrays.y_test, fingerprint=np.array(fingerprint))
        except OSError as exc:
            warnings.warn(f"could not write the data cache {file} ({exc}); continuing with the decoded "
                          f"images, which will be decoded again next time (free some space, or set "
                          f"{CACHE_DIR_ENV} to a folder with about 200 MB free)")
        return arrays
    finally:
        lock.release()


def _read_cache(file: Path, fingerprint: str, source: str, remove_damaged: bool = True) -> CifarArrays | None:
    """The cached arrays if ``file`` holds them for ``fingerprint``; None (and a damaged file removed, if
    ``remove_damaged``) if not."""
    if not file.exists():
        return None
    try:
        with np.load(file) as z:
            if "fingerprint" not in z.files or str(z["fingerprint"]) != fingerprint:
                log.info("the images changed since %s was written: decoding them again", file)
                return None
            return CifarArrays(z["x_train"], z["y_train"], z["x_test"], z["y_test"], source)
    except Exception:  # a damaged cache is rebuilt, never trusted
        if remove_damaged:
            file.unlink(missing_ok=True)
        return None


def _read_imagefolder(root: Path, progress: bool) -> CifarArrays:
    from PIL import Image
    from torchvision.datasets import ImageFolder

    out = {}
    for split in ("train", "test"):
        try:
            folder = ImageFolder(str(root / split))
        except (FileNotFoundError, RuntimeError) as exc:
            raise DataError(f"{_help(root)} ({exc})") from None
        if tuple(folder.classes) != CLASSES:
            raise DataError(f"{root / split} has class folders {folder.classes}; expected {list(CLASSES)}")
        images = np.empty((len(folder.samples), 32, 32, 3), dtype=np.uint8)
        labels = np.asarray(folder.targets, dtype=np.int64)
        for i, (file, _) in enumerate(tqdm(folder.samples, desc=f"decoding {split} images",
                                           disable=not progress, mininterval=1.0)):
            try:
                with Image.open(file) as img:
                    arr = np.asarray(img.convert("RGB"))
            except OSError as exc:
                raise DataError(f"cannot decode {file}: {exc}") from None
            if arr.shape != (32, 32, 3):
                raise DataError(f"{file} is {arr.shape[1]}x{arr.shape[0]}, expected 32x32 RGB")
            images[i] = arr
        out[split] = (images, labels)
    return CifarArrays(out["train"][0], out["train"][1], out["test"][0], out["test"][1], "imagefolder")


def _read_torchvision(root: Path, download: bool) -> CifarArrays:
    from torchvision.datasets import CIFAR10

    try:
        train = CIFAR10(str(root), train=True, download=download)
        test = CIFAR10(str(root), train=False, download=download)
    except Exception as exc:  # missing files, failed download, corrupt archive
        raise DataError(f"{_help(root)} (torchvision said: {exc})") from None
    return CifarArrays(np.asarray(train.data), np.asarray(train.targets, dtype=np.int64),
                       np.asarray(test.data), np.asarray(test.targets, dtype=np.int64), "torchvision")


def stratified_indices(labels: np.ndarray, n: int | None, seed: int, n_classes: int = 10) -> np.ndarray:
    """Sorted indices of a seeded subset with (as nearly as possible) equal counts per class."""
    labels = np.asarray(labels)
    if n is not None and n > len(labels):
        raise DataError(f"{n} images requested from a set of {len(labels)}")
    if n is None or n == len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    per_class = np.full(n_classes, n // n_classes)
    per_class[rng.permutation(n_classes)[: n % n_classes]] += 1
    chosen = []
    for c in range(n_classes):
        pool = np.flatnonzero(labels == c)
        if len(pool) < per_class[c]:
            raise DataError(f"class {c} has {len(pool)} images, {per_class[c]} requested")
        chosen.append(rng.choice(pool, size=per_class[c], replace=False))
    return np.sort(np.concatenate(chosen))


def to_float_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, 32, 32, 3) to float32 (N, 3072) in [0, 1], channel-major like ToTensor."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).reshape(len(images), -1).float().div_(255.0)


def channel_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of uint8 images, on the [0, 1] scale."""
    x = images.reshape(-1, 3).astype(np.float64) / 255.0
    return x.mean(axis=0), x.std(axis=0)


def normalize(flat: torch.Tensor, mean: np.ndarray, std: np.ndarray) -> torch.Tensor:
    """Per-channel normalisation of flattened channel-major images, in place."""
    view = flat.view(len(flat), 3, -1)
    view.sub_(torch.as_tensor(mean, dtype=flat.dtype).view(1, 3, 1))
    view.div_(torch.as_tensor(std, dtype=flat.dtype).view(1, 3, 1))
    return flat
