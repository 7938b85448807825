"""The phases of epoch-wise double descent, located on the four-way metric curves.

Smoothing. Recorded curves are noisy, and the events happen on a logarithmic time scale
(an early test peak within a few epochs, re-generalisation after hundreds). Every curve is
therefore smoothed by a centred running *median* whose half-width grows with the epoch:
at epoch ``e`` the window spans ``e ± smooth_window * e`` (constant width in log-epoch; with
the default 0.1, no smoothing before epoch 10, ±1 epoch at 10, ±10 at 100). A median leaves
monotone stretches unchanged and removes isolated spikes; near the last epoch the window
shrinks so that it stays centred. Events are *located* on the smoothed curve, then each
extremum is moved to the recorded extremum inside its smoothing window; reported accuracies and losses are the recorded (unsmoothed) values at those epochs,
while the decisions (is there a dip? does it re-generalise?) use the smoothed curve.

Events (None where an event does not occur within the recorded epochs):

* ``clean_fit_epoch``: first epoch with clean-train accuracy >= ``clean_fit_fraction``.
* ``noisy_fit_start_epoch``: after the minimum of the noisy-label accuracy, the first epoch
  at which it has climbed ``noisy_start`` of the way from that minimum to 1.
* ``noisy_fit_end_epoch``: first epoch with noisy-label accuracy >= ``noisy_fit_fraction``.
* ``noisy_true_peak_epoch`` / ``noisy_true_peak_acc``: where the noisy samples are most often
  classified as their *original* class (before the network memorises the wrong labels).
* ``test_peak_epoch``: first local maximum of test accuracy followed by a drop of at least
  ``min_drop`` (its topographic prominence, ``scipy.signal.find_peaks``);
  ``test_dip_epoch``: the lowest test accuracy between that peak and the next time the
  curve climbs back above the peak (or the last epoch).
* ``dip_recovery``: the *dip-to-best recovery*, a descriptive number and not the test of
  re-generalisation: the highest smoothed test accuracy once the noisy labels are fit (from
  ``noisy_fit_end_epoch`` or the dip, whichever is later) minus the smoothed dip;
  ``recovers_from_dip`` when it is at least ``recovery_min_gain``; ``recovery_epoch``: where
  that highest accuracy is reached. Being a maximum over many epochs measured from the dip
  *before* the fit, it is biased upwards; the verdict on re-generalisation is the paired
  post-fit change of ``analysis.regeneralisation``. A run that never fits the noisy labels
  gets 0.
* Test loss: ``test_loss_min_epoch`` the first local minimum with a later rise of at least
  ``loss_min_change``; ``test_loss_peak_epoch`` the highest loss after it;
  ``test_loss_second_descent`` when the loss falls by at least ``loss_min_change`` after
  that peak, and the peak lies before the last tenth of the epochs (a fall within the last
  few epochs is not a descent).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from scipy.signal import find_peaks


if TYPE_CHECKING:
    from ddd_support.runs.reader import RunData


@dataclass(frozen=True)
class Phases:
    """Epochs and values of the double-descent events of one run (None where absent)."""

    clean_fit_epoch: int | None
    noisy_fit_start_epoch: int | None
    noisy_fit_end_epoch: int | None
    noisy_true_peak_epoch: int | None
    noisy_true_peak_acc: float | None
    test_peak_epoch: int | None
    test_peak_acc: float | None
    test_dip_epoch: int | None
    test_dip_acc: float | None
    recovers_from_dip: bool
    recovery_epoch: int | None
    recovery_acc: float | None
    dip_recovery: float | None
    final_test_acc: float
    best_test_epoch: int
    best_test_acc: float
    test_loss_min_epoch: int | None
    test_loss_min: float | None
    test_loss_peak_epoch: int | None
    test_loss_peak: float | None
    test_loss_second_descent: bool
    test_loss_final: float
    last_epoch: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


PHASE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Phases))


def smooth_curve(epochs: np.ndarray, values: np.ndarray, smooth_window: float = 0.1) -> np.ndarray:
    """Centred running median over epochs ``e ± smooth_window * e`` (NaNs ignored).

    The window shrinks near the ends so that it stays centred (the last epoch is not smoothed).
    """
    epochs = np.asarray(epochs, dtype=float)
    values = np.asarray(values, dtype=float)
    if smooth_window <= 0:
        return values.copy()
    half = np.minimum(smooth_window * epochs, np.minimum(epochs - epochs[0], epochs[-1] - epochs))
    lo = np.searchsorted(epochs, epochs - half, side="left")
    hi = np.searchsorted(epochs, epochs + half, side="right")
    out = np.empty_like(values)
    for i, (a, b) in enumerate(zip(lo, hi)):
        window = values[a:b]
        out[i] = np.nanmedian(window) if np.isfinite(window).any() else np.nan
    return out


def detect_phases(metrics: pd.DataFrame, clean_fit_fraction: float = 0.99,
                  noisy_start: float = 0.1, noisy_fit_fraction: float = 0.99,
                  smooth_window: float = 0.1, min_drop: float = 0.01,
                  recovery_min_gain: float = 0.01, loss_min_change: float = 0.05,
                  n_test: int | None = None) -> Phases:
    """Locate the double-descent events in one run's metrics (definitions in the module docstring).

    Accuracies are fractions in [0, 1]; losses are mean cross-entropies in nats. Defaults:
    fitted at 99%, noisy fitting starts 10% of the way up, peaks and re-generalisation need
    1 accuracy point, loss turns need 0.05 nats, smoothing window ±10% of the epoch.
    With ``n_test`` (the number of test images), a test-accuracy peak and a re-generalisation
    must also exceed the sampling noise of that test set: ``test_noise_floor(acc, n_test)``.
    """
    m = metrics.sort_values("epoch")
    epochs = m["epoch"].to_numpy(dtype=int)
    if len(epochs) == 0:
        raise ValueError("metrics has no rows")
    smooth = {c: smooth_curve(epochs, m[c].to_numpy(dtype=float), smooth_window)
              for c in ("clean_acc", "noisy_acc", "noisy_true_acc", "test_acc", "test_loss")}
    raw = {c: m[c].to_numpy(dtype=float) for c in smooth}
    window = (epochs, smooth_window)

    noisy = smooth["noisy_acc"]
    start = None
    if np.isfinite(noisy).any():  # no noisy split when noise_rate is 0
        i_min = int(np.nanargmin(noisy))
        start = _first_at_least(noisy, noisy[i_min] + noisy_start * (1.0 - noisy[i_min]), after=i_min)

    test = smooth["test_acc"]
    peak = dip = regen = None
    dip_recovery = None
    if n_test is not None and np.isfinite(test).any():
        floor = test_noise_floor(float(np.nanmedian(test)), n_test)
        min_drop, recovery_min_gain = max(min_drop, floor), max(recovery_min_gain, floor)
    peaks, props = find_peaks(np.nan_to_num(test, nan=-np.inf), prominence=min_drop)
    if len(peaks):
        p, right_base = int(peaks[0]), int(props["right_bases"][0])
        d = p + int(np.nanargmin(test[p:right_base + 1]))
        peak = _refine(raw["test_acc"], p, *window, np.argmax)
        dip = _refine(raw["test_acc"], d, *window, np.argmin)
        fit_end = _first_at_least(noisy, noisy_fit_fraction)
        after = max(d, fit_end) if fit_end is not None else None
        if after is not None and after < len(test) - 1:
            r = after + int(np.nanargmax(test[after:]))
            dip_recovery = float(test[r] - test[d])
            if dip_recovery >= recovery_min_gain:
                regen = _refine(raw["test_acc"], r, *window, np.argmax)
        else:
            dip_recovery = 0.0

    loss = smooth["test_loss"]
    loss_min = loss_peak = None
    second_descent = False
    minima, lprops = find_peaks(np.nan_to_num(-loss, nan=-np.inf), prominence=loss_min_change)
    if len(minima):
        lm = int(minima[0])
        lp = lm + int(np.nanargmax(loss[lm:]))
        loss_min = _refine(raw["test_loss"], lm, *window, np.argmin)
        loss_peak = _refine(raw["test_loss"], lp, *window, np.argmax)
        room = epochs[lp] <= epochs[-1] - max(1, round(0.1 * epochs[-1]))  # a fall inside the last tenth is a wiggle
        second_descent = bool(room and loss[lp] - np.nanmin(loss[lp:]) >= loss_min_change)

    i_true = (_refine(raw["noisy_true_acc"], int(np.nanargmax(smooth["noisy_true_acc"])), *window, np.argmax)
              if np.isfinite(smooth["noisy_true_acc"]).any() else None)
    i_best = int(np.nanargmax(raw["test_acc"]))
    at = lambda i, c: None if i is None else float(raw[c][i])  # noqa: E731
    ep = lambda i: None if i is None else int(epochs[i])  # noqa: E731
    return Phases(
        clean_fit_epoch=ep(_first_at_least(smooth["clean_acc"], clean_fit_fraction)),
        noisy_fit_start_epoch=ep(start),
        noisy_fit_end_epoch=ep(_first_at_least(noisy, noisy_fit_fraction)),
        noisy_true_peak_epoch=ep(i_true), noisy_true_peak_acc=at(i_true, "noisy_true_acc"),
        test_peak_epoch=ep(peak), test_peak_acc=at(peak, "test_acc"),
        test_dip_epoch=ep(dip), test_dip_acc=at(dip, "test_acc"),
        recovers_from_dip=regen is not None, recovery_epoch=ep(regen), recovery_acc=at(regen, "test_acc"),
        dip_recovery=dip_recovery,
        final_test_acc=float(raw["test_acc"][-1]),
        best_test_epoch=int(epochs[i_best]), best_test_acc=float(raw["test_acc"][i_best]),
        test_loss_min_epoch=ep(loss_min), test_loss_min=at(loss_min, "test_loss"),
        test_loss_peak_epoch=ep(loss_peak), test_loss_peak=at(loss_peak, "test_loss"),
        test_loss_second_descent=second_descent,
        test_loss_final=float(raw["test_loss"][-1]),
        last_epoch=int(epochs[-1]),
    )


def test_noise_floor(acc: float, n_test: int, z: float = 2.0) -> float:
    """Smallest change of test accuracy that is not sampling noise: ``z * sqrt(2 acc (1 - acc) / n_test)``.

    The standard error of the difference of two accuracies, each measured on ``n_test``
    images (treated as independent, which is conservative), times ``z``.
    """
    return float(z * np.sqrt(2.0 * acc * (1.0 - acc) / n_test))


def phase_table(runs: list["RunData"], **thresholds: float) -> pd.DataFrame:
    """One row per run: model, seed and every ``Phases`` field (thresholds go to ``detect_phases``).

    Each run's test-set size is passed as ``n_test``, so changes within sampling noise do not count.
    """
    rows = [{"model": r.model, "seed": r.seed,
             **detect_phases(r.metrics, **{"n_test": test_set_size(r), **thresholds}).as_dict()}
            for r in runs]
    return pd.DataFrame(rows, columns=["model", "seed", *PHASE_FIELDS])


def test_set_size(run: "RunData") -> int:
    """The run's number of test images (``n_test`` None means all 10,000 of CIFAR-10)."""
    return int(run.config.get("n_test") or 10000)


def mean_metrics(runs: list["RunData"]) -> pd.DataFrame:
    """Seed-averaged metrics: the mean of every numeric column per epoch (epochs all runs share)."""
    if not runs:
        raise ValueError("no runs given")
    frames = pd.concat([r.metrics.assign(_run=i) for i, r in enumerate(runs)])
    counts = frames.groupby("epoch")["_run"].nunique()
    shared = counts.index[counts == len(runs)]
    mean = frames[frames["epoch"].isin(shared)].drop(columns="_run").groupby("epoch").mean()
    return mean.reset_index()


def mean_band(runs: list["RunData"], column: str,
              band: Literal["minmax", "std"] = "minmax") -> pd.DataFrame:
    """Across seeds, per epoch: ``mean`` and a band ``low``/``high`` (min-max or mean ± std), ``n`` seeds."""
    if not runs:
        raise ValueError("no runs given")
    if column not in runs[0].metrics.columns:
        raise KeyError(f"no metrics column {column!r}; columns: {list(runs[0].metrics.columns)}")
    values = pd.concat([r.metrics.set_index("epoch")[column].rename(i) for i, r in enumerate(runs)], axis=1)
    mean = values.mean(axis=1)
    if band == "minmax":
        low, high = values.min(axis=1), values.max(axis=1)
    elif band == "std":
        std = values.std(axis=1, ddof=1).fillna(0.0)
        low, high = mean - std, mean + std
    else:
        raise ValueError(f"band must be 'minmax' or 'std', got {band!r}")
    out = pd.DataFrame({"mean": mean, "low": low, "high": high, "n": values.count(axis=1)})
    return out.rename_axis("epoch").reset_index()


def _first_at_least(values: np.ndarray, level: float, after: int = 0) -> int | None:
    hits = np.flatnonzero(values[after:] >= level)
    return int(after + hits[0]) if len(hits) else None


def _refine(values: np.ndarray, i: int, epochs: np.ndarray, smooth_window: float, pick) -> int:
    """Move index ``i`` to the ``pick`` (argmax/argmin) of ``values`` within its smoothing window."""
    half = smooth_window * epochs[i]
    lo = int(np.searchsorted(epochs, epochs[i] - half, side="left"))
    hi = int(np.searchsorted(epochs, epochs[i] + half, side="right"))
    window = np.where(np.isfinite(values[lo:hi]), values[lo:hi], np.nan)
    if not np.isfinite(window).any():
        return i
    filled = np.nan_to_num(window, nan=-np.inf if pick is np.argmax else np.inf)
    return lo + int(pick(filled))
