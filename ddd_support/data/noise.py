"""Symmetric label noise with an exact count, its own seed, and the original labels kept."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ddd_support.errors import ConfigError


@dataclass(frozen=True)
class NoisyLabels:
    """Training labels after noise injection, with what is needed to undo it."""

    noisy: np.ndarray     # int64 (N,): the labels the model is trained on
    original: np.ndarray  # int64 (N,): the true labels
    mask: np.ndarray      # bool (N,): True where the label was replaced

    def __post_init__(self) -> None:
        shapes = {a.shape for a in (self.noisy, self.original, self.mask)}
        if len(shapes) != 1 or self.noisy.ndim != 1:
            raise ConfigError(
                "noisy, original and mask must be 1-D arrays of one length, got shapes "
                f"{self.noisy.shape}, {self.original.shape}, {self.mask.shape}")
        if not np.array_equal(self.noisy != self.original, self.mask):
            raise ConfigError("mask must be True exactly where noisy differs from original")

    @property
    def rate(self) -> float:
        """The realised noise rate."""
        return float(self.mask.mean()) if len(self.mask) else 0.0


def symmetric_noise(labels: np.ndarray, rate: float, seed: int, n_classes: int = 10,
                    exact_per_class: bool = False) -> NoisyLabels:
    """Replace exactly ``round(rate * n)`` labels by one drawn uniformly from the other classes.

    With ``exact_per_class`` the noisy samples are spread over the true classes in
    proportion to class size (largest remainder), so every class loses the same share.
    """
    original = np.asarray(labels)
    if original.ndim != 1:
        raise ConfigError(f"labels must be a 1-D array, got shape {original.shape}")
    if not (0.0 <= rate < 1.0):
        raise ConfigError(f"noise rate must be in [0, 1), got {rate}")
    if n_classes < 2:
        raise ConfigError(f"need at least 2 classes for label noise, got {n_classes}")
    original = original.astype(np.int64)
    if len(original) and (original.min() < 0 or original.max() >= n_classes):
        raise ConfigError(f"labels must lie in [0, {n_classes}), got range "
                          f"[{original.min()}, {original.max()}]")
    n = len(original)
    n_noisy = int(round(rate * n))
    rng = np.random.default_rng(seed)
    if exact_per_class:
        chosen = _per_class_choice(original, n_noisy, n_classes, rng)
    else:
        chosen = rng.choice(n, size=n_noisy, replace=False)
    noisy = original.copy()
    shift = rng.integers(1, n_classes, size=len(chosen))
    noisy[chosen] = (original[chosen] + shift) % n_classes
    mask = np.zeros(n, dtype=bool)
    mask[chosen] = True
    return NoisyLabels(noisy=noisy, original=original, mask=mask)


def _per_class_choice(labels: np.ndarray, n_noisy: int, n_classes: int,
                      rng: np.random.Generator) -> np.ndarray:
    counts = np.bincount(labels, minlength=n_classes)
    share = counts * (n_noisy / max(len(labels), 1))
    quota = np.floor(share).astype(int)
    remainder_order = np.argsort(-(share - quota), kind="stable")
    quota[remainder_order[: n_noisy - quota.sum()]] += 1
    return np.concatenate([
        rng.choice(np.flatnonzero(labels == c), size=quota[c], replace=False) for c in range(n_classes)
    ]).astype(np.int64)


def transition_matrix(original: np.ndarray, noisy: np.ndarray, n_classes: int = 10) -> np.ndarray:
    """Row-normalised matrix T[i, j] = fraction of true class i labelled j."""
    original, noisy = np.asarray(original), np.asarray(noisy)
    if original.shape != noisy.shape:
        raise ConfigError(f"original and noisy labels differ in shape: {original.shape} vs {noisy.shape}")
    counts = np.zeros((n_classes, n_classes))
    np.add.at(counts, (original, noisy), 1)
    return counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
