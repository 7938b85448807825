"""The large activation: one hidden neuron far above its layer's typical magnitude.

Magnitude of a neuron = its largest |post-ReLU activation| over the probe set (snapshot
``l{l}_absmax``). Its *ratio* compares the layer's top neuron with a reference magnitude:

* ``"median_nonzero"`` (default): the median |activation| over all probe samples x neurons
  that are non-zero. A ReLU layer is mostly zeros, so the plain median is often 0; the
  non-zero median is the typical size of an active unit.
* ``"second"``: the second-largest neuron's magnitude (how far the top neuron stands apart).
* ``"median"``: the plain median |activation| (zero when most activations are ReLU zeros).

A zero reference gives a NaN ratio (undefined), never an infinite one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, NamedTuple

import numpy as np
import pandas as pd
from scipy import stats

if TYPE_CHECKING:
    from .rundata import RunData

Reference = Literal["median_nonzero", "second", "median"]
#: How each reference reads in a sentence ("top neuron / <this>").
REFERENCE_NAMES: dict[str, str] = {"median_nonzero": "median non-zero activation",
                                   "second": "second-largest neuron", "median": "median activation"}
#: Spearman's standard error factor (Fieller, Hartley and Pearson 1957): se = sqrt(1.06 / (n - 3)).
SPEARMAN_SE_FACTOR = 1.06


def reference_magnitude(snapshot: dict[str, np.ndarray], layer: int,
                        reference: Reference = "median_nonzero") -> float:
    """The layer's reference magnitude that the top neuron is compared with (see module docstring)."""
    p = f"l{layer}_"
    if reference == "median_nonzero":
        return float(snapshot[p + "median_abs_nonzero"])
    if reference == "median":
        return float(snapshot[p + "median_abs"])
    if reference == "second":
        ordered = np.sort(np.asarray(snapshot[p + "absmax"], dtype=float))[::-1]
        return float(ordered[1]) if len(ordered) > 1 else float("nan")
    raise ValueError(f"reference must be 'median_nonzero', 'second' or 'median', got {reference!r}")


def large_activation_table(run: "RunData", threshold: float = 100.0,
                           reference: Reference = "median_nonzero") -> pd.DataFrame:
    """Per snapshot and layer: top neuron, its magnitude ``value``, the reference ``median``, ``ratio``, ``large``."""
    rows = []
    for epoch in run.snapshot_epochs:
        snap = run.snapshot(epoch)
        for layer in range(1, run.n_layers + 1):
            absmax = np.asarray(snap[f"l{layer}_absmax"], dtype=float)
            neuron = int(np.argmax(absmax))
            value = float(absmax[neuron])
            ref = reference_magnitude(snap, layer, reference)
            ratio = value / ref if ref > 0 else float("nan")
            rows.append((epoch, layer, neuron, value, ref, ratio, bool(ratio >= threshold)))
    table = pd.DataFrame(rows, columns=["epoch", "layer", "neuron", "value", "median", "ratio", "large"])
    table.attrs.update(reference=reference, threshold=threshold)
    return table


def emergence_epoch(table: pd.DataFrame, layer: int, threshold: float = 100.0,
                    persistent: bool = True) -> int | None:
    """First snapshot epoch at which the layer's ratio reaches ``threshold`` (and, if
    ``persistent``, stays there in every later snapshot); None if never."""
    t = table[table["layer"] == layer].sort_values("epoch")
    above = (t["ratio"] >= threshold).to_numpy()
    if persistent:
        above = np.logical_and.accumulate(above[::-1])[::-1]
    hits = np.flatnonzero(above)
    return int(t["epoch"].iloc[hits[0]]) if len(hits) else None


class Dominance(NamedTuple):
    """The most frequent top neuron of a layer and the fraction of snapshots where it is top."""

    neuron: int
    fraction: float
    n_snapshots: int


def dominant_neuron(table: pd.DataFrame, layer: int, min_epoch: int = 0) -> Dominance:
    """Is the top neuron the same one across snapshots (from ``min_epoch`` on)?"""
    t = table[(table["layer"] == layer) & (table["epoch"] >= min_epoch)]
    if t.empty:
        raise ValueError(f"no snapshots of layer {layer} from epoch {min_epoch} on")
    counts = t["neuron"].value_counts()
    return Dominance(int(counts.index[0]), float(counts.iloc[0] / len(t)), len(t))


def largest_layer(table: pd.DataFrame, epoch: int | None = None) -> int:
    """The layer whose top neuron has the largest ratio at ``epoch`` (default: the last snapshot)."""
    epoch = table["epoch"].max() if epoch is None else epoch
    t = table[table["epoch"] == epoch]
    if t.empty:
        raise ValueError(f"no snapshot of epoch {epoch}; epochs: {sorted(table['epoch'].unique())}")
    ratios = t["ratio"].fillna(-np.inf).to_numpy()
    return int(t["layer"].iloc[int(np.argmax(ratios))])


def correlation_ci(r: float, n: int, se_factor: float = 1.0, level: float = 0.95) -> tuple[float, float]:
    """Fisher-z confidence interval of a correlation: tanh(atanh r ± z * sqrt(se_factor / (n - 3)))."""
    if not np.isfinite(r) or n <= 3:
        return float("nan"), float("nan")
    if abs(r) >= 1.0:  # a perfect correlation has a degenerate interval
        return float(r), float(r)
    z = np.arctanh(r)
    half = stats.norm.ppf(0.5 + level / 2) * np.sqrt(se_factor / (n - 3))
    return float(np.tanh(z - half)), float(np.tanh(z + half))


def correlate(x: np.ndarray, y: np.ndarray, level: float = 0.95) -> dict[str, float]:
    """Pearson and Spearman correlation with Fisher-z intervals; NaN if either side is constant."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y, n = x[ok], y[ok], int(ok.sum())
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        pearson = spearman = float("nan")
    else:
        pearson = float(np.clip(stats.pearsonr(x, y).statistic, -1.0, 1.0))
        spearman = float(np.clip(stats.spearmanr(x, y).statistic, -1.0, 1.0))
    p_lo, p_hi = correlation_ci(pearson, n, 1.0, level)
    s_lo, s_hi = correlation_ci(spearman, n, SPEARMAN_SE_FACTOR, level)
    return {"pearson": pearson, "pearson_low": p_lo, "pearson_high": p_hi,
            "spearman": spearman, "spearman_low": s_lo, "spearman_high": s_hi, "n": n}


def probe_quantities(run: "RunData", snapshot: dict[str, np.ndarray], layer: int,
                     activation: np.ndarray) -> list[tuple[str, str, np.ndarray]]:
    """(name, kind, values over probe samples) of the input and output quantities correlated with a neuron.

    Input: brightness, contrast, mean red/green/blue, the neuron's pre-activation (its input
    projected on its weight vector plus bias). Output: membership of the true class and of
    the predicted class most correlated with the activation (point-biserial, the best of 10
    classes, so biased upwards by the choice), the logit margin (top-1 minus top-2 logit) and
    correctness of the prediction against the true label.
    """
    probe, logits = run.probe, np.asarray(snapshot["logits"], dtype=float)
    channel = np.asarray(probe["channel_mean"], dtype=float)
    out: list[tuple[str, str, np.ndarray]] = [
        ("brightness", "input", probe["brightness"]),
        ("contrast", "input", probe["contrast"]),
        ("red mean", "input", channel[:, 0]),
        ("green mean", "input", channel[:, 1]),
        ("blue mean", "input", channel[:, 2]),
        ("pre-activation", "input", snapshot[f"l{layer}_top_pre"][:, 0]),
    ]
    true, pred = np.asarray(probe["label"]), logits.argmax(axis=1)
    for name, labels in (("true class", true), ("predicted class", pred)):
        cls = _most_correlated_class(activation, labels, logits.shape[1])
        out.append((f"{name} = {_class_name(cls)}", "output", (labels == cls).astype(float)))
    top2 = np.sort(logits, axis=1)[:, -2:]
    out.append(("logit margin", "output", top2[:, 1] - top2[:, 0]))
    out.append(("correct (true label)", "output", (pred == true).astype(float)))
    return out


def correlation_table(run: "RunData", epoch: int | None = None, layer: int | None = None,
                      activation: Literal["post", "pre"] = "post", level: float = 0.95) -> pd.DataFrame:
    """Correlations of the top neuron's activation over the probe set with input and output quantities.

    Defaults: the last snapshot and the layer with the largest ratio there. The neuron is the
    snapshot's top neuron of that layer (``l{l}_top_idx[0]``); its post-ReLU activation
    (``l{l}_top_act[:, 0]``) or pre-activation (``activation="pre"``) is correlated. Columns:
    quantity, kind (input/output), pearson and spearman with Fisher-z ``level`` intervals, n.
    """
    epoch = run.last_snapshot_epoch if epoch is None else int(epoch)
    snap = run.snapshot(epoch)
    if layer is None:
        layer = largest_layer(large_activation_table(run), epoch)
    act = np.asarray(snap[f"l{layer}_top_act" if activation == "post" else f"l{layer}_top_pre"][:, 0], float)
    rows = []
    for name, kind, values in probe_quantities(run, snap, layer, act):
        if name == "pre-activation" and activation == "pre":
            continue
        rows.append({"quantity": name, "kind": kind, **correlate(act, values, level)})
    table = pd.DataFrame(rows)
    table.attrs.update(epoch=epoch, layer=layer, neuron=int(snap[f"l{layer}_top_idx"][0]), activation=activation)
    return table


def _most_correlated_class(activation: np.ndarray, labels: np.ndarray, n_classes: int) -> int:
    best, best_r = 0, -1.0
    for c in range(n_classes):
        r = correlate(activation, labels == c)["pearson"]
        if np.isfinite(r) and abs(r) > best_r:
            best, best_r = c, abs(r)
    return best


def _class_name(cls: int) -> str:
    from ..data import CLASSES

    return CLASSES[cls] if 0 <= cls < len(CLASSES) else str(cls)
