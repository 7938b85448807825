"""Intervals and tests shared by every verdict: paired changes over images, seed spread, verdicts.

Each measured effect is reported as an ``Interval`` (estimate and a 95% interval) and turned
into one of three verdicts by ``verdict``: the claim *holds* when the interval lies wholly on
the claimed side of its null value, *fails* otherwise, and is *not testable* when the
quantity cannot be measured in the run (``None``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

HOLDS, FAILS, NOT_TESTABLE = "holds", "fails", "not testable"
VERDICTS: tuple[str, ...] = (HOLDS, FAILS, NOT_TESTABLE)
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


def seed_interval(values: np.ndarray | list[float], level: float = 0.95) -> Interval:
    """Mean over seeds with a Student-t interval; one seed gives NaN bounds (no spread to measure)."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    n = len(v)
    if n == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0, "no seed")
    mean = float(v.mean())
    if n == 1:
        return Interval(mean, float("nan"), float("nan"), 1, "one seed")
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * v.std(ddof=1) / np.sqrt(n))
    return Interval(mean, mean - half, mean + half, n, f"t interval over {n} seeds")


def class_interval(values: np.ndarray, level: float = 0.95) -> Interval:
    """Mean over classes (or any small set of units) with a Student-t interval."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) < 2:
        return Interval(float(v.mean()) if len(v) else float("nan"), float("nan"), float("nan"), len(v))
    half = float(stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    mean = float(v.mean())
    return Interval(mean, mean - half, mean + half, len(v), f"t interval over {len(v)} classes")


def verdict(interval: Interval | None, null: float = 0.0, side: Literal["above", "below"] = "above") -> str:
    """holds if the interval lies wholly on ``side`` of ``null``; fails if not; not testable for None/NaN."""
    if interval is None or not np.isfinite(interval.estimate) or not (
            np.isfinite(interval.low) and np.isfinite(interval.high)):
        return NOT_TESTABLE
    ok = interval.low > null if side == "above" else interval.high < null
    return HOLDS if ok else FAILS


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
