"""The paper's findings as three-valued verdicts, one table: ``claim_rows`` and ``claims_over_seeds``.

Each claim of Kubo et al. (2026) becomes, per run, a *statistic* with its 95% interval
(``low``, ``high``) or a plain observation, an *outcome* in words and a *verdict*: holds,
fails or not testable (``stats``). A claim about the large activation is testable only where a
large activation exists. Over seeds a claim holds only if it holds in every seed where it is
testable. The book's sentences (``phase_sentence``, ``findings_in_words``) are written from
these tables, never by hand.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ddd_support.analysis.stats import FAILS, HOLDS, NOT_TESTABLE, Interval, outcome, seed_interval, verdict
from ddd_support.analysis.summary import RunSummary

#: The claims, in the order the book lists them: id -> statement.
CLAIMS: dict[str, str] = {
    "clean_first": "clean labels are learned before noisy ones (50% accuracy reached first)",
    "noisy_fit": "the noisy labels are fitted (99% training accuracy on them)",
    "test_dip": "test accuracy falls after its early peak",
    "post_fit_rise": "test accuracy rises after the noisy labels are fitted (second descent)",
    "outer_separates": "the last hidden layer separates noisy from clean images beyond the split-half baseline",
    "separation_depth": "separation grows with depth, net of its value at initialisation",
    "large_exists": "a large activation emerges (one neuron tops >= 50% of images, ratio >= 2x its initial value)",
    "large_100x": "the large activation reaches 100x the median non-zero activation",
    "large_shallow": "the large activation sits in the shallow half of the network",
    "large_input": "the large activation tracks the input more than the output, beyond random neurons",
    "large_needed": "silencing the large-activation neuron costs test accuracy beyond random neurons",
}
#: Where a claim's statistic is a change of accuracy (shown in percentage points).
ACCURACY_CLAIMS = frozenset({"test_dip", "post_fit_rise", "large_needed"})
COLUMNS = ["model", "seed", "claim", "statement", "statistic", "low", "high", "outcome", "verdict"]


def first_epoch_at(metrics: pd.DataFrame, column: str, level: float = 0.5) -> int | None:
    """First epoch at which ``column`` reaches ``level`` (None if never)."""
    reached = metrics.loc[metrics[column] >= level, "epoch"]
    return int(reached.iloc[0]) if len(reached) else None


def strongest_correlation(corr: pd.DataFrame, kind: str) -> float:
    """Largest |Pearson r| of a kind ('input' or 'output'), leaving out the neuron's own pre-activation."""
    rows = corr[(corr["kind"] == kind) & (corr["quantity"] != "pre-activation")]
    return float(rows["pearson"].abs().max())


def _row(claim: str, statistic: float, interval: Interval | None, words: str, result: str) -> dict[str, Any]:
    low = np.nan if interval is None else interval.low
    high = np.nan if interval is None else interval.high
    return {"claim": claim, "statement": CLAIMS[claim], "statistic": statistic, "low": low, "high": high,
            "outcome": words, "verdict": result}


def _observation(claim: str, statistic: float, holds: bool | None, words: str) -> dict[str, Any]:
    return _row(claim, statistic, None, words, NOT_TESTABLE if holds is None else (HOLDS if holds else FAILS))


def claims_from(s: RunSummary, threshold: float = 100.0) -> pd.DataFrame:
    """Every claim of ``CLAIMS`` on one run's summary: one row each (columns ``COLUMNS``)."""
    m = s.metrics
    rows: list[dict[str, Any]] = []
    clean50, noisy50 = first_epoch_at(m, "clean_acc"), first_epoch_at(m, "noisy_acc")
    first = clean50 is not None and (noisy50 is None or clean50 < noisy50)
    rows.append(_observation("clean_first", np.nan if noisy50 is None or clean50 is None else noisy50 - clean50,
                             first, f"clean at epoch {clean50}, noisy at epoch {noisy50}"))
    best_noisy = float(m["noisy_acc"].max())
    rows.append(_observation("noisy_fit", best_noisy, best_noisy >= 0.99, f"noisy-label accuracy reaches {best_noisy:.1%}"))

    d = s.peak_to_dip
    if np.isfinite(d["change"]):
        ci = Interval(d["change"], d["low"], d["high"], s.n_test)
        rows.append(_row("test_dip", d["change"], ci, outcome(ci, "rises", "falls"), verdict(ci, side="below")))
    else:
        rows.append(_observation("test_dip", np.nan, False, "no early peak"))

    p = s.post_fit
    ci = None if p["outcome"] == NOT_TESTABLE else Interval(p["change"], p["low"], p["high"], s.n_test)
    rows.append(_row("post_fit_rise", p["change"], ci,
                     "noisy labels never fitted" if ci is None else p["outcome"], verdict(ci)))

    if s.depth is None:
        why = "no split-half baseline recorded"
        rows += [_observation("outer_separates", np.nan, None, why), _observation("separation_depth", np.nan, None, why)]
    else:
        dp = s.depth
        outer = Interval(dp["outer"], dp["outer_low"], dp["outer_high"], 10)
        trend = Interval(dp["trend"], dp["trend_low"], dp["trend_high"], 10)
        rows.append(_row("outer_separates", dp["outer"], outer, outcome(outer, "separates", "closer than baseline"),
                         verdict(outer)))
        rows.append(_row("separation_depth", dp["trend"], trend, outcome(trend, "grows with depth", "shrinks with depth"),
                         verdict(trend)))

    g = s.large
    if not g["recorded"]:
        why = "no per-image statistics recorded"
        rows += [_observation(c, np.nan, None, why) for c in
                 ("large_exists", "large_100x", "large_shallow", "large_input", "large_needed")]
        return _finish(rows, s)
    rows.append(_observation("large_exists", g["growth"], g["exists"],
                             f"layer {g['layer']}: ratio {g['ratio']:.1f}x ({g['growth']:.2f}x its initial "
                             f"{g['ratio_at_init']:.1f}x), neuron {g['neuron']} tops {g['dominance']:.0%} of images"))
    rows.append(_observation("large_100x", g["ratio"], g["ratio"] >= threshold, f"median per-image ratio {g['ratio']:.1f}x"))
    none = "no large activation to test"
    if not g["exists"]:
        rows += [_observation(c, np.nan, None, none) for c in ("large_shallow", "large_input", "large_needed")]
        return _finish(rows, s)
    rows.append(_observation("large_shallow", g["layer"] / g["layers"], g["layer"] <= g["layers"] / 2,
                             f"layer {g['layer']} of {g['layers']}"))
    a = s.correlations.attrs
    diff = Interval(a["input_r"] - a["output_r"], a["input_r_low"] - a["output_r_high"],
                    a["input_r_high"] - a["output_r_low"], int(s.correlations["n"].iloc[0]))
    tracks = verdict(diff)
    if tracks == HOLDS and not a["input_percentile"] >= 0.95:
        tracks = FAILS
    rows.append(_row("large_input", diff.estimate, diff,
                     f"input |r| {a['input_r']:.2f} (random neurons' percentile {a['input_percentile']:.0%}), "
                     f"output |r| {a['output_r']:.2f}", tracks))
    ab = s.ablation
    if ab is None:
        rows.append(_observation("large_needed", np.nan, None, "no ablation computed"))
    else:
        ci = Interval(ab["d_test_acc"], ab["low"], ab["high"], s.n_test)
        needed = verdict(ci, side="below")
        if needed == HOLDS and not ab["percentile"] >= 0.95:
            needed = FAILS
        rows.append(_row("large_needed", ab["d_test_acc"], ci,
                         f"{outcome(ci, 'helps', 'hurts')}; costs more than {ab['percentile']:.0%} of "
                         f"{ab['n_random']} random neurons", needed))
    return _finish(rows, s)


def _finish(rows: list[dict[str, Any]], s: RunSummary) -> pd.DataFrame:
    return pd.DataFrame([{**s.key, **r} for r in rows], columns=COLUMNS)


def claims_over_seeds(claims: pd.DataFrame) -> pd.DataFrame:
    """Per model and claim over seeds: counts of each verdict, the mean statistic with a seed
    t interval, and the overall verdict (holds only if it holds in every testable seed)."""
    rows = []
    for (model, claim), g in claims.groupby(["model", "claim"], sort=False):
        testable = g[g["verdict"] != NOT_TESTABLE]
        ci = seed_interval(testable["statistic"].to_numpy(dtype=float))
        overall = (NOT_TESTABLE if testable.empty else
                   HOLDS if (testable["verdict"] == HOLDS).all() else FAILS)
        rows.append({"model": model, "claim": claim, "statement": CLAIMS.get(claim, claim), "seeds": len(g),
                     "testable": len(testable), "holds": int((g["verdict"] == HOLDS).sum()),
                     "fails": int((g["verdict"] == FAILS).sum()), "mean": ci.estimate, "low": ci.low,
                     "high": ci.high, "verdict": overall})
    return pd.DataFrame(rows)


def claim_counts(claims: pd.DataFrame) -> pd.DataFrame:
    """Claims (by id) x models: "holds (k/n)" (n testable seeds) or "not testable", in ``CLAIMS`` order."""
    over = claims_over_seeds(claims)
    text = over.apply(lambda r: NOT_TESTABLE if r["testable"] == 0 else f"{r['verdict']} ({r['holds']}/{r['testable']})",
                      axis=1)
    table = over.assign(text=text).pivot(index="claim", columns="model", values="text")
    order = [c for c in CLAIMS if c in table.index]
    models = list(dict.fromkeys(claims["model"]))
    return table.loc[order, models].rename_axis("claim").rename_axis(None, axis=1)


# --------------------------------------------------------------------------- in words
def points(x: float) -> str:
    """An accuracy change in percentage points, e.g. ``+1.2``."""
    return f"{100 * x:+.1f}"


#: How a claim's statistic reads in a sentence: scale, number format, unit.
STATISTIC_FORMATS: dict[str, tuple[float, str, str]] = {
    **{c: (100.0, "{:+.1f}", " points") for c in ACCURACY_CLAIMS},
    "clean_first": (1.0, "{:+.0f}", " epochs"), "noisy_fit": (100.0, "{:.1f}", "%"),
    "large_exists": (1.0, "{:.2f}", "x its initial ratio"), "large_100x": (1.0, "{:.1f}", "x the median"),
    "large_shallow": (1.0, "{:.2f}", " of the depth"),
}
DEFAULT_FORMAT = (1.0, "{:+.2f}", "")


def interval_text(mean: float, low: float, high: float, scale: float = 100.0, digits: int = 1,
                  fmt: str | None = None) -> str:
    """``+1.2 (95% interval +0.4 to +2.0)``; without bounds where they are undefined (one seed)."""
    fmt = fmt or f"{{:+.{digits}f}}"
    if not (np.isfinite(low) and np.isfinite(high)):
        return fmt.format(scale * mean)
    return f"{fmt.format(scale * mean)} (95% interval {fmt.format(scale * low)} to {fmt.format(scale * high)})"


def phase_sentence(model: str, phases: dict[str, Any] | pd.Series, post_fit: dict[str, Any] | pd.Series) -> str:
    """One run's test-accuracy story: early peak, dip, noisy fit and the paired post-fit change."""
    name = model.upper()
    if phases["test_peak_epoch"] is None or pd.isna(phases["test_peak_epoch"]):
        text = f"{name} shows no early test peak"
    else:
        text = (f"{name} peaks at epoch {int(phases['test_peak_epoch'])} ({phases['test_peak_acc']:.1%}) "
                f"and dips to {phases['test_dip_acc']:.1%} at epoch {int(phases['test_dip_epoch'])}")
    if post_fit["outcome"] == NOT_TESTABLE:
        return text + f"; it never fits 99% of its noisy labels and ends at {phases['final_test_acc']:.1%}"
    return (text + f"; from the noisy fit (epoch {int(post_fit['fit_epoch'])}) to the end its test accuracy "
            f"changes by {interval_text(post_fit['change'], post_fit['low'], post_fit['high'])} points: "
            f"{post_fit['outcome']}")


def over_seeds_sentence(over: pd.DataFrame, claim: str, models: list[str] | None = None) -> str:
    """Per model: the verdict of ``claim`` over seeds with its mean statistic and seed interval."""
    rows = over[over["claim"] == claim]
    if models is not None:
        rows = rows[rows["model"].isin(models)]
    if (rows["testable"] == 0).all():
        return "not testable in any model"
    scale, fmt, unit = STATISTIC_FORMATS.get(claim, DEFAULT_FORMAT)
    parts = []
    for _, r in rows.iterrows():
        if r["testable"] == 0:
            parts.append(f"{str(r['model']).upper()}: not testable")
            continue
        stat = interval_text(r["mean"], r["low"], r["high"], scale, fmt=fmt)
        parts.append(f"{str(r['model']).upper()} {stat}{unit}: {r['verdict']} (holds in {r['holds']} of "
                     f"{r['testable']} seed{'s' if r['testable'] > 1 else ''})")
    return "; ".join(parts)


def verdict_phrase(over: pd.DataFrame, claim: str, model: str) -> str:
    """The over-seeds verdict of one claim and model in words: "holds (3 of 3 seeds)" and the like."""
    rows = over[(over["claim"] == claim) & (over["model"] == model)]
    if rows.empty or int(rows["testable"].iloc[0]) == 0:
        return NOT_TESTABLE
    r = rows.iloc[0]
    return f"{r['verdict']} (holds in {r['holds']} of {r['testable']} seed{'s' if r['testable'] > 1 else ''})"


def models_where(over: pd.DataFrame, claim: str, verdict: str = HOLDS) -> str:
    """The models (upper case, in table order) whose over-seeds verdict of ``claim`` is ``verdict``, or "none"."""
    rows = over[(over["claim"] == claim) & (over["verdict"] == verdict)]
    return ", ".join(str(m).upper() for m in rows["model"]) or "none"
