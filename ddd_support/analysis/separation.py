"""Clean/noisy signal separation: cosine similarity of per-class mean hidden activations."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from .rundata import RunData

NOISY_KEYS = {"true": "mean_noisy", "noisy": "mean_noisy_by_noisy"}


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray | float:
    """Cosine of two vectors, or row-wise of two (n, d) arrays; NaN where a row is zero or has NaN."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.sum(a * b, axis=-1) / norms
    cos = np.where((norms > 0) & np.isfinite(norms), np.clip(cos, -1.0, 1.0), np.nan)
    return float(cos) if cos.ndim == 0 else cos


def separation_table(run: "RunData", by: Literal["true", "noisy"] = "true",
                     layers: list[int] | None = None) -> pd.DataFrame:
    """Per snapshot, layer and class: cosine between the mean activations of clean and noisy samples.

    ``by="true"`` (what the paper's claim needs) groups noisy training samples by their
    original class, so both means describe images of the same class and differ only in
    whether the label was kept. A relabelled image still carries its true class's signal:
    a cosine near 1 means the layer treats it like its clean classmates, a falling cosine
    means the layer separates the noisy-label signal from the clean one. ``by="noisy"``
    groups noisy samples by the label they were trained on (cosine rising = the layer maps
    them onto that label's clean samples). Classes with a NaN or all-zero mean are skipped.
    """
    if by not in NOISY_KEYS:
        raise ValueError(f"by must be 'true' or 'noisy', got {by!r}")
    layers = layers or list(range(1, run.n_layers + 1))
    rows = []
    for epoch in run.snapshot_epochs:
        snap = run.snapshot(epoch)
        for layer in layers:
            clean = snap[f"l{layer}_mean_clean"]
            noisy = snap[f"l{layer}_{NOISY_KEYS[by]}"]
            for cls, cos in enumerate(np.atleast_1d(cosine_similarity(clean, noisy))):
                if np.isfinite(cos):
                    rows.append((epoch, layer, cls, float(cos)))
    return pd.DataFrame(rows, columns=["epoch", "layer", "class", "cosine"])


def layer_separation(table: pd.DataFrame) -> pd.DataFrame:
    """Class-averaged cosine per (epoch, layer), with ``n_classes`` that entered the mean."""
    grouped = table.groupby(["epoch", "layer"])["cosine"]
    out = grouped.mean().rename("cosine").to_frame()
    out["n_classes"] = grouped.count()
    return out.reset_index()


def separation_summary(layer_table: pd.DataFrame) -> pd.DataFrame:
    """Per layer: cosine at the first and the last snapshot and the change between them."""
    first, last = layer_table["epoch"].min(), layer_table["epoch"].max()
    pivot = layer_table.pivot(index="layer", columns="epoch", values="cosine")
    out = pd.DataFrame({"first_epoch": first, "first": pivot[first],
                        "last_epoch": last, "last": pivot[last]})
    out["change"] = out["last"] - out["first"]
    return out.reset_index()
