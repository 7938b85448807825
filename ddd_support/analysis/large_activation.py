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

from ddd_support.data.cifar import CLASSES

if TYPE_CHECKING:
    from ddd_support.runs.reader import RunData

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


def _finite_pairs(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """The pairs where both are finite, and whether a correlation is defined on them (three or more,
    neither side constant)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    return x, y, len(x) >= 3 and np.ptp(x) != 0 and np.ptp(y) != 0


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's r over the finite pairs, without an interval (``correlate``'s ``pearson``)."""
    x, y, defined = _finite_pairs(x, y)
    return float(np.clip(stats.pearsonr(x, y).statistic, -1.0, 1.0)) if defined else float("nan")


def correlate(x: np.ndarray, y: np.ndarray, level: float = 0.95) -> dict[str, float]:
    """Pearson and Spearman correlation with Fisher-z intervals; NaN if either side is constant."""
    x, y, defined = _finite_pairs(x, y)
    n = len(x)
    pearson_r = pearson(x, y)
    spearman = float(np.clip(stats.spearmanr(x, y).statistic, -1.0, 1.0)) if defined else float("nan")
    p_lo, p_hi = correlation_ci(pearson_r, n, 1.0, level)
    s_lo, s_hi = correlation_ci(spearman, n, SPEARMAN_SE_FACTOR, level)
    return {"pearson": pearson_r, "pearson_low": p_lo, "pearson_high": p_hi,
            "spearman": spearman, "spearman_low": s_lo, "spearman_high": s_hi, "n": n}


def probe_quantities(run: "RunData", snapshot: dict[str, np.ndarray], layer: int,
                     activation: np.ndarray) -> list[tuple[str, str, np.ndarray]]:
    """(name, kind, values over probe samples) of the input and output quantities correlated with a neuron.

    Input: brightness, contrast, mean red/green/blue, the scores on the five leading principal
    components of the training images (runs of schema 2), the neuron's pre-activation (its
    input projected on its weight vector plus bias). Output: membership of the true class and of
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
        *[(f"image PC{j + 1}", "input", pc)
          for j, pc in enumerate(np.asarray(probe["pc"]).T if "pc" in probe else [])],
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
                      activation: Literal["post", "pre"] = "post", level: float = 0.95,
                      neuron: int | None = None) -> pd.DataFrame:
    """Correlations of the top neuron's activation over the probe set with input and output quantities.

    Defaults: the last snapshot and the layer with the largest ratio there. The neuron is the
    snapshot's top neuron of that layer (``l{l}_top_idx[0]``) unless ``neuron`` names another one
    whose activations the snapshot kept; its post-ReLU activation
    (``l{l}_top_act[:, 0]``) or pre-activation (``activation="pre"``) is correlated. Columns:
    quantity, kind (input/output), pearson and spearman with Fisher-z ``level`` intervals, n.
    """
    epoch = run.last_snapshot_epoch if epoch is None else int(epoch)
    snap = run.snapshot(epoch)
    if layer is None:
        layer = largest_layer(large_activation_table(run), epoch)
    act = np.asarray(snap[f"l{layer}_top_act" if activation == "post" else f"l{layer}_top_pre"][:, 0], float)
    if neuron is not None and neuron != int(snap[f"l{layer}_top_idx"][0]):
        if activation == "pre" or (act := neuron_activation(snap, layer, neuron)) is None:
            raise ValueError(f"the snapshot of epoch {epoch} did not keep the activations of layer {layer} "
                             f"neuron {neuron}")
    rows = []
    for name, kind, values in probe_quantities(run, snap, layer, act):
        if name == "pre-activation" and activation == "pre":
            continue
        rows.append({"quantity": name, "kind": kind, **correlate(act, values, level)})
    table = pd.DataFrame(rows)
    table.attrs.update(epoch=epoch, layer=layer, activation=activation,
                       neuron=int(snap[f"l{layer}_top_idx"][0]) if neuron is None else int(neuron))
    return table


def _most_correlated_class(activation: np.ndarray, labels: np.ndarray, n_classes: int) -> int:
    best, best_r = 0, -1.0
    for c in range(n_classes):
        r = pearson(activation, labels == c)
        if np.isfinite(r) and abs(r) > best_r:
            best, best_r = c, abs(r)
    return best


def _class_name(cls: int) -> str:
    return CLASSES[cls] if 0 <= cls < len(CLASSES) else str(cls)


# --------------------------------------------------------------------------- per image, as Sun et al. measure it
#: Defaults of the existence test: the per-image ratio must have grown this many times since
#: initialisation, and one neuron must be the top one in at least this fraction of images (a
#: share that must also have grown this many times since initialisation).
GROWTH_MIN, DOMINANCE_MIN = 2.0, 0.5


def per_image_ratio(snapshot: dict[str, np.ndarray], layer: int) -> np.ndarray | None:
    r"""Per probe image i: :math:`r_i = \max_j |a_{ij}| / \operatorname{median}_{j: a_{ij} \neq 0} |a_{ij}|`.

    The image's largest activation in the layer over the median of its non-zero ones (NaN if
    the image has none); None for runs recorded without per-image statistics (schema 1).
    """
    p = f"l{layer}_"
    if p + "img_top" not in snapshot:
        return None
    top = np.asarray(snapshot[p + "img_top"], dtype=float)
    median = np.asarray(snapshot[p + "img_median_nonzero"], dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(median > 0, top / median, np.nan)


def per_image_table(run: "RunData") -> pd.DataFrame:
    """Per snapshot and layer: median, quartiles of the per-image ratio, the modal top neuron and its share.

    Columns: epoch, layer, ratio (median over images), ratio_q25, ratio_q75, neuron (the
    neuron that is most often the image's top one), dominance (the share of images where it
    is), growth (ratio over the layer's ratio at the first snapshot), dominance_at_init (the
    layer's dominance at the first snapshot). Empty for schema-1 runs.
    """
    rows = []
    for epoch in run.snapshot_epochs:
        snap = run.snapshot(epoch)
        for layer in range(1, run.n_layers + 1):
            r = per_image_ratio(snap, layer)
            if r is None:
                return pd.DataFrame(columns=["epoch", "layer", "ratio", "ratio_q25", "ratio_q75", "neuron",
                                             "dominance", "growth", "dominance_at_init"])
            arg = np.asarray(snap[f"l{layer}_img_argmax"])
            values, counts = np.unique(arg, return_counts=True)
            q25, med, q75 = np.nanpercentile(r, [25, 50, 75]) if np.isfinite(r).any() else (np.nan,) * 3
            rows.append({"epoch": epoch, "layer": layer, "ratio": float(med), "ratio_q25": float(q25),
                         "ratio_q75": float(q75), "neuron": int(values[np.argmax(counts)]),
                         "dominance": float(counts.max() / len(arg))})
    table = pd.DataFrame(rows)
    first = table[table["epoch"] == table["epoch"].min()].set_index("layer")
    table["growth"] = table["ratio"] / table["layer"].map(first["ratio"])
    table["dominance_at_init"] = table["layer"].map(first["dominance"])
    return table


def large_activation_exists(row: "pd.Series | dict", growth_min: float = GROWTH_MIN,
                            dominance_min: float = DOMINANCE_MIN) -> bool:
    """A layer has a large activation that *emerged* when its per-image ratio grew ``growth_min``
    times since initialisation and one neuron is the top one in at least ``dominance_min`` of the
    images, a share that also grew ``growth_min`` times since initialisation (a layer whose
    neuron already dominated at initialisation has nothing that emerged)."""
    at_init = row.get("dominance_at_init", 0.0) if hasattr(row, "get") else 0.0
    at_init = 0.0 if at_init is None or not np.isfinite(at_init) else float(at_init)
    return bool(row["growth"] >= growth_min and row["dominance"] >= dominance_min
                and row["dominance"] >= growth_min * at_init)


def candidate_layer(table: pd.DataFrame, growth_min: float = GROWTH_MIN,
                    dominance_min: float = DOMINANCE_MIN) -> tuple[int, bool]:
    """At the last snapshot of a ``per_image_table``: the layer with a large activation and the
    largest ratio (``True``), or, if no layer has one, the layer with the largest ratio (``False``)."""
    last = table[table["epoch"] == table["epoch"].max()].copy()
    last["exists"] = [large_activation_exists(r, growth_min, dominance_min) for _, r in last.iterrows()]
    pool = last[last["exists"]] if last["exists"].any() else last
    row = pool.loc[pool["ratio"].fillna(-np.inf).idxmax()]
    return int(row["layer"]), bool(row["exists"])


def persistent_from(table: pd.DataFrame, layer: int, growth_min: float = GROWTH_MIN,
                    dominance_min: float = DOMINANCE_MIN) -> int | None:
    """First snapshot epoch from which the layer meets the existence test in every later snapshot."""
    t = table[table["layer"] == layer].sort_values("epoch")
    ok = np.array([large_activation_exists(r, growth_min, dominance_min) for _, r in t.iterrows()])
    ok = np.logical_and.accumulate(ok[::-1])[::-1]
    hits = np.flatnonzero(ok)
    return int(t["epoch"].iloc[hits[0]]) if len(hits) else None


def top_neuron_image_table(run: "RunData") -> pd.DataFrame:
    r"""For runs without per-image statistics (schema 1), from the probe-wide top neuron's stored
    activations (``l{l}_top_act[:, 0]``), per snapshot and layer: ``ratio`` the median over probe
    images of :math:`a_i / m`, with :math:`m` the layer's median non-zero |activation| over the probe
    set, ``active`` the share of images on which the neuron is non-zero, and ``growth`` the ratio
    over the layer's ratio at the first snapshot. Which neuron tops each image is not recorded."""
    rows = []
    for epoch in run.snapshot_epochs:
        snap = run.snapshot(epoch)
        for layer in range(1, run.n_layers + 1):
            act = np.asarray(snap[f"l{layer}_top_act"][:, 0], dtype=float)
            ref = float(snap[f"l{layer}_median_abs_nonzero"])
            ratio = np.abs(act) / ref if ref > 0 else np.full(len(act), np.nan)
            rows.append({"epoch": epoch, "layer": layer, "neuron": int(snap[f"l{layer}_top_idx"][0]),
                         "ratio": float(np.nanmedian(ratio)), "active": float(np.mean(act != 0))})
    table = pd.DataFrame(rows)
    first = table[table["epoch"] == table["epoch"].min()].set_index("layer")["ratio"]
    table["growth"] = table["ratio"] / table["layer"].map(first)
    return table


def neuron_activation(snapshot: dict[str, np.ndarray], layer: int, neuron: int) -> np.ndarray | None:
    """The probe activations of ``neuron`` if the snapshot kept them (a top or a random neuron), else None."""
    for idx_key, act_key in (("top_idx", "top_act"), ("rand_idx", "rand_act")):
        idx = snapshot.get(f"l{layer}_{idx_key}")
        if idx is not None and neuron in np.asarray(idx):
            return np.asarray(snapshot[f"l{layer}_{act_key}"][:, int(np.flatnonzero(np.asarray(idx) == neuron)[0])],
                              dtype=float)
    return None


def best_correlations(run: "RunData", snapshot: dict[str, np.ndarray], layer: int,
                      activation: np.ndarray) -> dict[str, float]:
    """Largest |Pearson r| of an activation with the input quantities (the neuron's own
    pre-activation left out) and with the output quantities, with Fisher-z intervals."""
    out: dict[str, float] = {}
    for kind in ("input", "output"):
        best = {"pearson": np.nan, "pearson_low": np.nan, "pearson_high": np.nan}
        best_values = None
        for name, k, values in probe_quantities(run, snapshot, layer, activation):
            if k != kind or name == "pre-activation":
                continue
            r = pearson(activation, values)
            if np.isfinite(r) and not abs(r) <= abs(best["pearson"]):
                best["pearson"], best_values = r, values
        if best_values is not None:   # the interval of the best one only
            best = correlate(activation, best_values)
        r, lo, hi = abs(best["pearson"]), best["pearson_low"], best["pearson_high"]
        if np.isfinite(r) and best["pearson"] < 0:
            lo, hi = -hi, -lo
        out.update({f"{kind}_r": r, f"{kind}_r_low": lo, f"{kind}_r_high": hi})
    return out


def random_neuron_correlations(run: "RunData", snapshot: dict[str, np.ndarray], layer: int) -> pd.DataFrame:
    """``best_correlations`` of each random control neuron the snapshot kept (empty for schema 1)."""
    idx = snapshot.get(f"l{layer}_rand_idx")
    if idx is None:
        return pd.DataFrame(columns=["neuron", "input_r", "output_r"])
    rows = []
    for j, neuron in enumerate(np.asarray(idx)):
        act = np.asarray(snapshot[f"l{layer}_rand_act"][:, j], dtype=float)
        rows.append({"neuron": int(neuron), **best_correlations(run, snapshot, layer, act)})
    return pd.DataFrame(rows)
