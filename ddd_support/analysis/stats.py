"""Intervals and tests shared by every verdict: paired changes over images, seed spread, verdicts.

Each measured effect is reported as an ``Interval`` (estimate and a 95% interval) and judged
against zero and against the claim's *smallest effect of interest* ``effect`` (on the claimed
side), which gives one of four verdicts (``verdict``):

* *holds*: the interval lies wholly on the claimed side of zero and still reaches ``effect``;
* *ruled out*: the interval excludes ``effect`` (an equivalence test: every value the data
  allow is smaller than the effect of interest, including a detectable but smaller one);
* *inconclusive*: the interval includes zero and ``effect`` alike (nothing shown, nothing excluded);
* *not testable*: the quantity cannot be measured in the run (``None``).

The one-sided p-values behind the two tests (``p_values``) are adjusted for multiplicity by
Holm's step-down method (``holm``) within each model's claims; a verdict at 95% needs the
adjusted one-sided p below 0.025, which is the 95% two-sided interval's own criterion.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

HOLDS, RULED_OUT, INCONCLUSIVE, NOT_TESTABLE = "holds", "ruled out", "inconclusive", "not testable"
VERDICTS: tuple[str, ...] = (HOLDS, RULED_OUT, INCONCLUSIVE, NOT_TESTABLE)
#: The one-sided level of each test: the 95% two-sided interval's own criterion.
ALPHA_ONE_SIDED = 0.025
#: The two-sided normal quantile of a 95% interval.
Z95 = float(stats.norm.ppf(0.975))


@dataclass(frozen=True)
class Interval:
    """An estimate with a two-sided interval (``level``) and the sample size it came from."""

    estimate: float
    low: float
    high: float
    n: int
    method: str = ""

    def excludes(self, value: float = 0.0) -> bool:
        """True if the whole interval lies above or below ``value``."""
        return bool(self.low > value or self.high < value)

    def direction(self, null: float = 0.0) -> Literal["up", "down", "none"]:
        """``up`` / ``down`` if the interval lies wholly above / below ``null``, else ``none``."""
        if self.low > null:
            return "up"
        if self.high < null:
            return "down"
        return "none"


def paired_change(before: np.ndarray, after: np.ndarray, level: float = 0.95) -> Interval:
    """Mean of ``after - before`` over the same items (images) with a normal interval.

    ``before`` and ``after`` are per-item scores, e.g. correctness (0/1) or its mean over a
    window of epochs. The interval is the paired one: mean difference ± z * sd(diff) / sqrt(n),
    so images that are right (or wrong) at both times add no noise.
    """
    before, after = np.asarray(before, dtype=float), np.asarray(after, dtype=float)
    if before.shape != after.shape or before.ndim != 1:
        raise ValueError(f"need two equal 1-d arrays, got {before.shape} and {after.shape}")
    diff = after - before
    n = len(diff)
    if n < 2:
        raise ValueError("a paired change needs at least two items")
    z = float(stats.norm.ppf(0.5 + level / 2))
    mean, se = float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(n))
    return Interval(mean, mean - z * se, mean + z * se, n, "paired over images")


def unpaired_change(acc_before: float, acc_after: float, n: int, level: float = 0.95) -> Interval:
    """Change of an accuracy measured twice on ``n`` images without per-image records (conservative).

    Treats the two accuracies as independent binomial proportions: the interval is wider than
    the paired one, which a run that recorded per-image correctness gets instead.
    """
    z = float(stats.norm.ppf(0.5 + level / 2))
    se = float(np.sqrt(acc_before * (1 - acc_before) / n + acc_after * (1 - acc_after) / n))
    d = float(acc_after - acc_before)
    return Interval(d, d - z * se, d + z * se, int(n), "unpaired binomial (no per-image record)")


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> dict[str, float]:
    """McNemar's exact test of two classifiers on the same images.

    Returns ``a_only`` (right under a, wrong under b), ``b_only`` and the two-sided exact
    binomial p-value of ``b_only`` among the discordant images (1.0 if there are none).
    """
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    a_only, b_only = int(np.sum(a & ~b)), int(np.sum(~a & b))
    discordant = a_only + b_only
    p = 1.0 if discordant == 0 else float(stats.binomtest(b_only, discordant, 0.5).pvalue)
    return {"a_only": a_only, "b_only": b_only, "p_value": p}


def seed_interval(values: np.ndarray | list[float], level: float = 0.95,
                  errors: np.ndarray | list[float] | None = None) -> Interval:
    """Mean over seeds with a Student-t interval (n - 1 degrees of freedom).

    ``errors``, each seed's own standard error (its sampling noise), set a floor under the
    spread: the variance of one seed's value is taken as the larger of the seeds' sample
    variance and the mean of their squared errors, since three seeds can agree by chance more
    closely than each one's sampling noise allows. One seed: its own normal interval from
    ``errors`` if given, else NaN bounds (no spread to measure).
    """
    pairs = [(float(x), float("nan") if errors is None else float(e))
             for x, e in zip(values, errors if errors is not None else [None] * len(list(values)))
             if x is not None and np.isfinite(x)]
    v = np.array([x for x, _ in pairs], dtype=float)
    se = np.array([e for _, e in pairs], dtype=float)
    n = len(v)
    if n == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0, "no seed")
    mean = float(v.mean())
    sampling = float(np.mean(se ** 2)) if errors is not None and np.isfinite(se).all() else float("nan")
    if n == 1:
        if not np.isfinite(sampling):
            return Interval(mean, float("nan"), float("nan"), 1, "one seed")
        half = float(stats.norm.ppf(0.5 + level / 2) * np.sqrt(sampling))
        return Interval(mean, mean - half, mean + half, 1, "one seed, its own sampling interval")
    var = float(v.var(ddof=1))
    if np.isfinite(sampling):
        var = max(var, sampling)
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * np.sqrt(var / n))
    floor = ", spread at least the seeds' sampling noise" if np.isfinite(sampling) else ""
    method = f"t interval over {n} seeds{floor}"
    return Interval(mean, mean - half, mean + half, n, method)


def standard_error(interval: Interval, level: float = 0.95) -> float:
    """The standard error a symmetric two-sided normal interval implies (NaN without bounds)."""
    if not (np.isfinite(interval.low) and np.isfinite(interval.high)):
        return float("nan")
    return float((interval.high - interval.low) / (2 * stats.norm.ppf(0.5 + level / 2)))


def class_interval(values: np.ndarray, level: float = 0.95) -> Interval:
    """Mean over classes (or any small set of units) with a Student-t interval."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) < 2:
        return Interval(float(v.mean()) if len(v) else float("nan"), float("nan"), float("nan"), len(v))
    half = float(stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    mean = float(v.mean())
    return Interval(mean, mean - half, mean + half, len(v), f"t interval over {len(v)} classes")


def _valid(interval: Interval | None) -> bool:
    return interval is not None and bool(np.isfinite(interval.estimate) and np.isfinite(interval.low)
                                         and np.isfinite(interval.high))


def p_values(interval: Interval | None, effect: float, side: Literal["above", "below"] = "above",
             df: int | None = None, level: float = 0.95) -> tuple[float, float]:
    """One-sided p-values of an interval's two tests: (no effect on the claimed side, effect at
    least ``effect``). The first small means "holds", the second small means "ruled out".

    The standard error comes from the interval (normal, or Student-t with ``df`` degrees of
    freedom as for a seed interval); ``effect`` is the smallest effect of interest, positive,
    on the claimed ``side``. NaN for an interval without bounds.
    """
    if not _valid(interval):
        return float("nan"), float("nan")
    dist = stats.norm if df is None else stats.t(df)
    q = dist.ppf(0.5 + level / 2)
    se = (interval.high - interval.low) / (2 * q)
    signed = interval.estimate if side == "above" else -interval.estimate
    if se <= 0:
        return float(signed <= 0), float(signed >= effect)
    return float(dist.sf(signed / se)), float(dist.cdf((signed - effect) / se))


def holm(p: np.ndarray | list[float]) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (NaN entries stay NaN and do not count)."""
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if not len(ok):
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    m = len(order)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def verdict(interval: Interval | None, effect: float, side: Literal["above", "below"] = "above",
            p_holds: float | None = None, p_ruled_out: float | None = None,
            alpha: float = ALPHA_ONE_SIDED) -> str:
    """The four-valued verdict of an interval against zero and the smallest effect of interest.

    Without p-values the interval decides: *ruled out* when it excludes ``effect`` on the claimed
    ``side``, else *holds* when it excludes zero on that side, else *inconclusive*. With
    (adjusted) p-values, each test must also pass at ``alpha`` (one-sided).
    """
    if not _valid(interval):
        return NOT_TESTABLE
    lo, hi = (interval.low, interval.high) if side == "above" else (-interval.high, -interval.low)
    ruled_out = hi < effect and (p_ruled_out is None or p_ruled_out < alpha)
    holds = lo > 0 and (p_holds is None or p_holds < alpha)
    return RULED_OUT if ruled_out else HOLDS if holds else INCONCLUSIVE


def observed(value: float, effect: float, side: Literal["above", "below"] = "above") -> str:
    """The verdict of a plain observation (no sampling interval): holds at or beyond ``effect``, else
    ruled out; not testable for NaN."""
    if value is None or not np.isfinite(value):
        return NOT_TESTABLE
    return HOLDS if (value >= effect if side == "above" else value <= effect) else RULED_OUT


def outcome(interval: Interval | None, up: str, down: str, null: float = 0.0,
            none: str = "no detectable change") -> str:
    """The interval in words: ``up`` / ``down`` when it excludes ``null``, else ``none``."""
    if interval is None or not (np.isfinite(interval.low) and np.isfinite(interval.high)):
        return "not measurable"
    return {"up": up, "down": down, "none": none}[interval.direction(null)]


def percentile_rank(value: float, others: np.ndarray) -> float:
    """Fraction of ``others`` strictly below ``value`` (ties count half), in [0, 1]."""
    others = np.asarray(others, dtype=float)
    others = others[np.isfinite(others)]
    if len(others) == 0 or not np.isfinite(value):
        return float("nan")
    return float((np.sum(others < value) + 0.5 * np.sum(others == value)) / len(others))
