"""Clean/noisy signal separation: cosine similarity of per-class mean hidden activations."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from ddd_support.analysis.stats import class_interval
from ddd_support.errors import RunDirError

if TYPE_CHECKING:
    from ddd_support.runs.reader import RunData

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


def clean_mean(snapshot: dict[str, np.ndarray], layer: int) -> np.ndarray:
    """The clean class means a comparison uses: clean half A (as many images as the noisy group,
    schema 2), else the clean probe means (schema 1)."""
    key = f"l{layer}_mean_clean_a"
    return snapshot[key] if key in snapshot else snapshot[f"l{layer}_mean_clean"]


def separation_table(run: "RunData", by: Literal["true", "noisy"] = "true",
                     layers: list[int] | None = None) -> pd.DataFrame:
    """Per snapshot, layer and class: cosine between the mean activations of clean and noisy samples.

    The clean means are those of ``clean_mean`` (clean half A where recorded).
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
    key = f"l1_{NOISY_KEYS[by]}"
    if key not in run.snapshot(run.snapshot_epochs[0]):
        raise RunDirError(f"{run.path} keeps no {NOISY_KEYS[by]} class means (a compact reference copy keeps "
                          f"only those the separation index needs); use by='true', or analyse runs you trained")
    rows = []
    for epoch in run.snapshot_epochs:
        snap = run.snapshot(epoch)
        for layer in layers:
            clean = clean_mean(snap, layer)
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
    """Per layer: cosine at the first and the last snapshot and the change between them (no rows when no
    cosine could be computed: a run without noisy or without clean images)."""
    layer_table = layer_table.dropna(subset=["cosine"])
    if layer_table.empty:
        return pd.DataFrame(columns=["layer", "first_epoch", "first", "last_epoch", "last", "change"])
    first, last = layer_table["epoch"].min(), layer_table["epoch"].max()
    pivot = layer_table.pivot(index="layer", columns="epoch", values="cosine")
    out = pd.DataFrame({"first_epoch": first, "first": pivot[first],
                        "last_epoch": last, "last": pivot[last]})
    out["change"] = out["last"] - out["first"]
    return out.reset_index()


# --------------------------------------------------------------------------- the index with its baselines
#: Snapshot groups the index compares (``l{l}_mean_<group>``); runs of schema 1 have only
#: probe means ``clean`` and ``noisy``, so their split-half baseline is missing.
INDEX_GROUPS: tuple[str, ...] = ("clean_a", "clean_b", "noisy", "test", "unseen")


def unseen_mean(snapshot: dict[str, np.ndarray], layer: int) -> tuple[np.ndarray | None, str]:
    """The class means of images the network never trained on, and which ones they are: the
    matched-size unseen group (``mean_unseen``) where recorded, else all probe test images
    (``mean_test``, a larger sample), else None."""
    for key, what in (("mean_unseen", "matched"), ("mean_test", "all test images")):
        if f"l{layer}_{key}" in snapshot:
            return snapshot[f"l{layer}_{key}"], what
    return None, "none"


def class_cosines(snapshot: dict[str, np.ndarray], layer: int, exclude_top: int = 0) -> pd.DataFrame:
    r"""Per class c of one snapshot and layer: the cosines behind the separation index.

    With :math:`\mu^A_c, \mu^B_c` the class means of the two clean halves, :math:`\mu^N_c` the
    noisy images of true class c and :math:`\mu^T_c` the test images of class c:
    ``clean_noisy`` = cos(A_c, N_c); ``split_half`` = cos(A_c, B_c), the same comparison between
    two clean samples of the same size (its sampling baseline); ``between`` = the mean over
    c' != c of cos(A_c, A_c'); ``clean_test`` = cos(A_c, T_c);
    ``index`` = (split_half - clean_noisy) / (1 - between): 0 when noisy images sit as close
    to their clean classmates as another clean sample does, 1 when they sit as far as another
    class; ``raw`` = (1 - clean_noisy) / (1 - between), without the baseline.
    ``exclude_top`` leaves the layer's k largest neurons (by probe ``absmax``) out of every mean.
    """
    p = f"l{layer}_"
    a = clean_mean(snapshot, layer).astype(np.float64)
    b = snapshot.get(p + "mean_clean_b")
    n = snapshot[p + "mean_noisy"].astype(np.float64)
    t = snapshot.get(p + "mean_test")
    u, _ = unseen_mean(snapshot, layer)
    keep = np.ones(a.shape[1], dtype=bool)
    if exclude_top:
        keep[np.argsort(np.asarray(snapshot[p + "absmax"], dtype=float))[::-1][:exclude_top]] = False
    a, n = a[:, keep], n[:, keep]
    b = None if b is None else b.astype(np.float64)[:, keep]
    t = None if t is None else t.astype(np.float64)[:, keep]
    u = None if u is None else u.astype(np.float64)[:, keep]
    k = len(a)
    pair = np.array([[cosine_similarity(a[i], a[j]) for j in range(k)] for i in range(k)])
    np.fill_diagonal(pair, np.nan)
    counts = np.sum(~np.isnan(pair), axis=1)  # a class without clean images has no cosine: NaN, not a warning
    with np.errstate(invalid="ignore"):
        between = np.where(counts > 0, np.nansum(pair, axis=1) / np.maximum(counts, 1), np.nan)
    nan = np.full(k, np.nan)
    clean_noisy = np.atleast_1d(cosine_similarity(a, n))
    split_half = nan if b is None else np.atleast_1d(cosine_similarity(a, b))
    clean_test = nan if t is None else np.atleast_1d(cosine_similarity(a, t))
    clean_unseen = nan if u is None else np.atleast_1d(cosine_similarity(a, u))
    with np.errstate(invalid="ignore", divide="ignore"):
        index = (split_half - clean_noisy) / (1.0 - between)
        unseen_index = (split_half - clean_unseen) / (1.0 - between)
        raw = (1.0 - clean_noisy) / (1.0 - between)
    return pd.DataFrame({"class": np.arange(k), "clean_noisy": clean_noisy, "split_half": split_half,
                         "between": between, "clean_test": clean_test, "clean_unseen": clean_unseen,
                         "index": index, "unseen_index": unseen_index, "net_index": index - unseen_index,
                         "raw": raw})


def index_table(run: "RunData", exclude_top: int = 0) -> pd.DataFrame:
    """``class_cosines`` for every snapshot and layer of a run: one row per (epoch, layer, class)."""
    frames = []
    for epoch in run.snapshot_epochs:
        snap = run.snapshot(epoch)
        for layer in range(1, run.n_layers + 1):
            frames.append(class_cosines(snap, layer, exclude_top).assign(epoch=epoch, layer=layer))
    table = pd.concat(frames, ignore_index=True)
    return table[["epoch", "layer", "class", *[c for c in table.columns if c not in ("epoch", "layer", "class")]]]


def layer_index(table: pd.DataFrame) -> pd.DataFrame:
    """Class means per (epoch, layer) of an ``index_table``, with t intervals over classes of the index
    and of the index net of the unseen images."""
    rows = []
    for (epoch, layer), g in table.groupby(["epoch", "layer"]):
        ci, net = class_interval(g["index"].to_numpy()), class_interval(g["net_index"].to_numpy())
        rows.append({"epoch": epoch, "layer": layer, **{c: float(g[c].mean()) for c in
                     ("clean_noisy", "split_half", "between", "clean_test", "clean_unseen", "raw")},
                     "index": ci.estimate, "index_low": ci.low, "index_high": ci.high,
                     "unseen_index": float(g["unseen_index"].mean()),
                     "net_index": net.estimate, "net_low": net.low, "net_high": net.high})
    return pd.DataFrame(rows)


def depth_trend(table: pd.DataFrame) -> dict[str, float]:
    r"""How much more the last layer separates than layer 1, net of initialisation, with a class interval.

    Per class, :math:`t_c = [s_{L,c}(E) - s_{1,c}(E)] - [s_{L,c}(0) - s_{1,c}(0)]` from the
    index :math:`s` at the first and last snapshots; also the last layer's index at the last
    snapshot (``outer``), each with a t interval over the classes. Where the run recorded unseen
    images, :math:`s` is the index net of them (``net_index``; ``net`` True), so a drift that
    unseen images share does not count; ``outer_gross`` keeps the index before that.
    """
    first, last = table["epoch"].min(), table["epoch"].max()
    top = table["layer"].max()

    net = bool(table["net_index"].notna().any()) if "net_index" in table else False
    column = "net_index" if net else "index"

    def s(epoch: int, layer: int, col: str = column) -> np.ndarray:
        return table[(table["epoch"] == epoch) & (table["layer"] == layer)].sort_values("class")[col].to_numpy()

    trend = class_interval((s(last, top) - s(last, 1)) - (s(first, top) - s(first, 1)))
    outer = class_interval(s(last, top))
    outer0 = class_interval(s(first, top))
    return {"first_epoch": int(first), "last_epoch": int(last), "layers": int(top),
            "trend": trend.estimate, "trend_low": trend.low, "trend_high": trend.high,
            "outer": outer.estimate, "outer_low": outer.low, "outer_high": outer.high,
            "outer_at_init": outer0.estimate, "layer1": float(np.nanmean(s(last, 1))),
            "outer_gross": float(np.nanmean(s(last, top, "index"))), "net": net}
