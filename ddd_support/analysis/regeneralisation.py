r"""Re-generalisation after the noisy fit, measured on the same test images.

The noisy-fit epoch :math:`f` is the first epoch from which the training accuracy on the
noisy samples (against the labels they were trained on) stays at or above ``fit_level`` (99%)
for ``HOLD`` (5) epochs in a row: a single crossing that falls back at once does not start the
fit. With
:math:`c_{i,e}\in\{0,1\}` the correctness of test image :math:`i` after epoch :math:`e`, the
*post-fit change* compares a window of ``window`` epochs from the fit with the last
``end_fraction`` of the run:

.. math::

   \Delta_{\text{post-fit}} = \frac{1}{n}\sum_i \bigl(\bar c_{i,\text{end}} - \bar c_{i,\text{fit}}\bigr),
   \quad \bar c_{i,W} = \frac{1}{|W|}\sum_{e\in W} c_{i,e},

   W_\text{fit} = \{f, \dots, f + w - 1\},\quad W_\text{end} = \text{the last}\ \lceil 0.1\,E\rceil\ \text{epochs}.

Its 95% interval is the paired one over images (``stats.paired_change``); the outcome is
*rises* / *no detectable change* / *falls*, and the change is *not testable* when the noisy
labels are never fitted or the two windows overlap. Runs recorded without per-image
correctness get the wider unpaired interval from the two window accuracies.

*Sensitivity grid* (``sensitivity_grid``): the same change for every fit level x fit window x
end window of ``GRID`` (3 x 3 x 2 = 18 variants). A verdict that flips inside the grid rests on
one choice of definition, and the claims read it as inconclusive at best.

*Held level* (``held_noisy_level``): the lowest noisy-label accuracy over the last
``end_fraction`` of the epochs, the share of wrong labels the network keeps fitting to the end
(the maximum over epochs would count a passing crossing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

import numpy as np
import pandas as pd

from ddd_support.analysis.phases import test_set_size
from ddd_support.analysis.stats import Interval, outcome, paired_change, standard_error, unpaired_change

if TYPE_CHECKING:
    from ddd_support.runs.reader import RunData

#: Defaults of the definition above.
FIT_LEVEL, WINDOW, END_FRACTION, HOLD = 0.99, 5, 0.1, 5
#: The sensitivity grid: fit levels, fit windows (epochs) and end windows (fractions of the run).
GRID: dict[str, tuple[float, ...]] = {"level": (0.95, 0.99, 1.0), "window": (1, 5, 10), "end_fraction": (0.1, 0.2)}


@dataclass(frozen=True)
class Curves:
    """What the post-fit change reads from a run: its metrics, its per-image test correctness
    ((epochs + 1, n_test), None where not recorded) and its number of test images. A sweep's
    committed tables give the same without the run directory."""

    metrics: pd.DataFrame
    test_correct: np.ndarray | None
    n_test: int


def curves_of(run: Union["RunData", Curves]) -> Curves:
    """The ``Curves`` of a run (a ``Curves`` is returned as it is)."""
    if isinstance(run, Curves):
        return run
    return Curves(run.metrics, run.test_correct, test_set_size(run))


def noisy_fit_epoch(metrics: pd.DataFrame, level: float = FIT_LEVEL, hold: int = HOLD) -> int | None:
    """First epoch from which ``noisy_acc`` stays at or above ``level`` for ``hold`` recorded epochs
    in a row (None if never)."""
    m = metrics.sort_values("epoch")
    above = (m["noisy_acc"].to_numpy(dtype=float) >= level).astype(int)
    if len(above) < hold:
        return None
    runs = np.convolve(above, np.ones(hold, dtype=int), mode="valid")
    hits = np.flatnonzero(runs == hold)
    return int(m["epoch"].iloc[hits[0]]) if len(hits) else None


def held_noisy_level(metrics: pd.DataFrame, end_fraction: float = END_FRACTION) -> float:
    """The lowest noisy-label accuracy over the last ``end_fraction`` of the epochs (NaN without noise)."""
    m = metrics.sort_values("epoch")
    last = int(m["epoch"].max())
    n_end = max(1, math.ceil(end_fraction * last))
    values = m.loc[m["epoch"] > last - n_end, "noisy_acc"].to_numpy(dtype=float)
    return float(np.nanmin(values)) if np.isfinite(values).any() else float("nan")


def fit_and_end_windows(metrics: pd.DataFrame, level: float = FIT_LEVEL, window: int = WINDOW,
                        end_fraction: float = END_FRACTION) -> tuple[list[int], list[int]] | None:
    """The epochs of W_fit and W_end, or None when the change is not testable."""
    fit = noisy_fit_epoch(metrics, level)
    last = int(metrics["epoch"].max())
    n_end = max(1, math.ceil(end_fraction * last))
    end = list(range(last - n_end + 1, last + 1))
    if fit is None or fit + window - 1 >= end[0]:
        return None
    return list(range(fit, fit + window)), end


def post_fit_change(run: Union["RunData", Curves], level: float = FIT_LEVEL, window: int = WINDOW,
                    end_fraction: float = END_FRACTION) -> dict[str, object]:
    """The post-fit change of one run (definition in the module docstring) as one row.

    Keys: ``fit_epoch``, ``fit_window`` and ``end_window`` (first-last epoch), ``acc_fit``,
    ``acc_end`` (window accuracies), ``change``, ``low``, ``high``, ``method``, ``outcome``.
    """
    run = curves_of(run)
    m = run.metrics
    windows = fit_and_end_windows(m, level, window, end_fraction)
    row: dict[str, object] = {"fit_epoch": noisy_fit_epoch(m, level), "fit_window": None, "end_window": None,
                              "acc_fit": np.nan, "acc_end": np.nan, "change": np.nan, "low": np.nan,
                              "high": np.nan, "se": np.nan, "method": "", "outcome": "not testable"}
    if windows is None:
        return row
    fit_w, end_w = windows
    interval = window_change(run, fit_w, end_w)
    acc = m.set_index("epoch")["test_acc"]
    row.update(fit_window=f"{fit_w[0]}-{fit_w[-1]}", end_window=f"{end_w[0]}-{end_w[-1]}",
               acc_fit=float(acc.loc[fit_w].mean()), acc_end=float(acc.loc[end_w].mean()),
               change=interval.estimate, low=interval.low, high=interval.high, se=standard_error(interval),
               method=interval.method,
               outcome=outcome(interval, "rises", "falls"))
    return row


def window_change(run: Union["RunData", Curves], before: list[int], after: list[int]) -> Interval:
    """Change of test accuracy from the epochs ``before`` to the epochs ``after`` (window means),
    paired over images when the run recorded per-image correctness."""
    run = curves_of(run)
    correct = run.test_correct
    if correct is not None:
        return paired_change(correct[before].mean(axis=0), correct[after].mean(axis=0))
    acc = run.metrics.set_index("epoch")["test_acc"]
    return unpaired_change(float(acc.loc[before].mean()), float(acc.loc[after].mean()), run.n_test)


def post_fit_table(runs: list["RunData"], **kwargs: float) -> pd.DataFrame:
    """``post_fit_change`` of each run, one row per run with its model and seed."""
    return pd.DataFrame([{"model": r.model, "seed": r.seed, **post_fit_change(r, **kwargs)} for r in runs])


def sensitivity_grid(run: Union["RunData", Curves], grid: dict[str, tuple[float, ...]] | None = None) -> pd.DataFrame:
    """``post_fit_change`` for every combination of ``GRID`` (or ``grid``): one row per variant with
    ``level``, ``window``, ``end_fraction`` and the change, its interval and outcome."""
    grid = GRID if grid is None else grid
    run = curves_of(run)
    rows = [{"level": level, "window": int(window), "end_fraction": end,
             **post_fit_change(run, level, int(window), end)}
            for level in grid["level"] for window in grid["window"] for end in grid["end_fraction"]]
    return pd.DataFrame(rows)
