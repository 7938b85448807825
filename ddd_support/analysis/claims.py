"""The paper's findings as four-valued verdicts, one table: ``claim_rows`` and ``claims_over_seeds``.

Each claim of Kubo et al. (2026) states its *smallest effect of interest* (``EFFECTS``, with
its reason) and becomes, per run, a *statistic* with its 95% interval (``low``, ``high``) or a
plain observation, an *outcome* in words and a *verdict* (``stats``): *holds* (the interval
excludes zero on the claimed side and still reaches the effect), *ruled out* (the interval
excludes the effect: anything the data allow is smaller), *inconclusive* (the interval holds
both), *not testable* (not measurable in the run).

Some claims are *thresholds* rather than changes (``THRESHOLD_CLAIMS``: clean labels first, the
noisy fit held, the large activation's growth, size and depth): per run they are plain
observations without a sampling interval (a run's own images, not a sample), which hold at or
beyond the threshold and fall short of it otherwise. Over two or more seeds they get an
interval from the seed spread and are judged against the threshold itself: *holds* when the
interval lies wholly beyond it and every seed holds, *ruled out* when it lies wholly short of
it, *inconclusive* otherwise. On one seed such a verdict rests on the value alone, and the
table's ``basis`` says so.

Each interval claim carries two one-sided p-values (no effect; an effect at least the one of
interest), raw and Holm-adjusted within the claims of one run (``claim_rows``) or of one model
over seeds (``claims_over_seeds``); the verdict uses the adjusted ones. Over seeds, the interval
is the seed mean's, with a spread no smaller than each seed's own sampling noise
(``stats.seed_interval``), and the table says on how many seeds it rests. The post-fit rise is
also judged on every variant of its sensitivity grid (``regeneralisation.sensitivity_grid``):
a verdict that flips inside the grid is inconclusive. The book's sentences are written from
these tables, never by hand.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd

from ddd_support.analysis.stats import (HOLDS, INCONCLUSIVE, NOT_TESTABLE, RULED_OUT, Interval, holm, observed,
                                        outcome, p_values, seed_interval, standard_error, verdict)
from ddd_support.analysis.phases import detect_phases
from ddd_support.analysis.regeneralisation import Curves, held_noisy_level, post_fit_change, sensitivity_grid
from ddd_support.analysis.summary import RunSummary, peak_to_dip_change

#: The claims, in the order the book lists them: id -> statement in plain words.
CLAIMS: dict[str, str] = {
    "clean_first": "clean labels are learned before noisy ones (50% accuracy reached at least one epoch earlier)",
    "noisy_fit": "the noisy labels are fitted and stay fitted (at least 95% of them, held over the last tenth "
                 "of training)",
    "test_dip": "test accuracy falls after its early peak (by at least 1 point)",
    "post_fit_rise": "test accuracy rises again after the noisy labels are fitted (by at least 1 point)",
    "outer_separates": "the last hidden layer sets noisy images apart from their clean classmates, more than unseen "
                       "images (net index at least 0.1)",
    "separation_depth": "the net separation grows with depth, beyond its value at initialisation (by at least 0.1)",
    "large_exists": "a large activation emerges: one neuron tops at least half of the images, its ratio and its share "
                    "both at least twice their values at initialisation",
    "large_100x": "the large activation reaches 100 times the median non-zero activation",
    "large_shallow": "the large activation sits in the shallow half of the network",
    "large_input": "the large activation tracks the input more than the output (|r| larger by at least 0.1), "
                   "beyond random neurons",
    "large_needed": "silencing the large-activation neuron costs test accuracy (at least 1 point), beyond random "
                    "neurons",
}


#: Each claim in a few plain words, for sentences and table rows.
SHORT_NAMES: dict[str, str] = {
    "clean_first": "clean labels learned first",
    "noisy_fit": "noisy labels fitted and held",
    "test_dip": "test accuracy falls after its early peak",
    "post_fit_rise": "test accuracy rises again after the noisy fit",
    "outer_separates": "the last layer sets noisy images apart",
    "separation_depth": "that separation grows with depth",
    "large_exists": "a large activation emerges",
    "large_100x": "it reaches 100 times the typical activation",
    "large_shallow": "it sits in the shallow half",
    "large_input": "it tracks the input more than the output",
    "large_needed": "the network needs it",
}


class Effect(NamedTuple):
    """A claim's smallest effect of interest: its size on the claimed side and why."""

    size: float
    side: Literal["above", "below"]
    reason: str


#: Every claim's smallest effect of interest (in the statistic's own units).
EFFECTS: dict[str, Effect] = {
    "clean_first": Effect(1.0, "above", "one epoch: an earlier epoch at all"),
    "noisy_fit": Effect(0.95, "above", "95% of the wrong labels kept to the end is memorisation, not a passing "
                                       "crossing"),
    "test_dip": Effect(-0.01, "below", "about the epoch-to-epoch wobble of a test-accuracy curve"),
    "post_fit_rise": Effect(0.01, "above", "about the epoch-to-epoch wobble of a test-accuracy curve (its standard "
                                           "deviation is about 1 point in the cpu and paper reference runs), so a smaller rise would "
                                           "not show as a second descent in a figure"),
    "outer_separates": Effect(0.1, "above", "a tenth of the way from another clean sample to another class"),
    "separation_depth": Effect(0.1, "above", "a tenth of the way from another clean sample to another class"),
    "large_exists": Effect(2.0, "above", "twice its initial value, for both the ratio and the share of images"),
    "large_100x": Effect(100.0, "above", "the paper's order of magnitude"),
    "large_shallow": Effect(0.5, "below", "the shallow half: layer k of L with k / L at most one half"),
    "large_input": Effect(0.1, "above", "0.1 in |r|, a difference a scatter plot would show"),
    "large_needed": Effect(-0.01, "below", "as for the rise of test accuracy"),
}
#: Claims whose effect is a threshold the statistic itself must reach (not a change from zero).
THRESHOLD_CLAIMS = frozenset({"clean_first", "noisy_fit", "large_exists", "large_100x", "large_shallow"})
#: The ``basis`` of an over-seeds verdict resting on one seed's value (a threshold claim on one seed).
ONE_VALUE = "one seed's value, no interval"
#: Added to the ``basis`` of a threshold claim whose seeds all give the same value: its interval has
#: no width, and the verdict rests on the seeds' agreement, not on a measured spread.
NO_SPREAD = "every seed the same value, so no spread"
#: The outcome note (and pending verdict) of a neuron whose effect does not stand out from random neurons':
#: such a claim is at best inconclusive.
NOT_BEYOND = "not beyond random neurons"
#: Where a claim's statistic is a change of accuracy (shown in percentage points).
ACCURACY_CLAIMS = frozenset({"test_dip", "post_fit_rise", "large_needed"})
COLUMNS = ["model", "seed", "claim", "statement", "effect", "statistic", "low", "high", "p_holds", "p_holds_holm",
           "p_ruled_out", "p_ruled_out_holm", "outcome", "verdict"]
OVER_COLUMNS = ["model", "claim", "statement", "effect", "seeds", "testable", "holds", "ruled_out", "inconclusive",
                "mean", "low", "high", "basis", "p_holds", "p_holds_holm", "p_ruled_out", "p_ruled_out_holm",
                "grid", "verdict"]


def first_epoch_at(metrics: pd.DataFrame, column: str, level: float = 0.5) -> int | None:
    """First epoch at which ``column`` reaches ``level`` (None if never)."""
    reached = metrics.loc[metrics[column] >= level, "epoch"]
    return int(reached.iloc[0]) if len(reached) else None


def strongest_correlation(corr: pd.DataFrame, kind: str) -> float:
    """Largest |Pearson r| of a kind ('input' or 'output'), leaving out the neuron's own pre-activation."""
    rows = corr[(corr["kind"] == kind) & (corr["quantity"] != "pre-activation")]
    return float(rows["pearson"].abs().max())


def _row(claim: str, statistic: float, interval: Interval | None, words: str,
         result: str | None = None) -> dict[str, Any]:
    """One claim's row; ``result`` None: judged later from the interval (``_judge``)."""
    low = np.nan if interval is None else interval.low
    high = np.nan if interval is None else interval.high
    return {"claim": claim, "statement": CLAIMS[claim], "effect": EFFECTS[claim].size, "statistic": statistic,
            "low": low, "high": high, "outcome": words, "verdict": result}


def _observation(claim: str, statistic: float, words: str, result: str | None = None) -> dict[str, Any]:
    """A plain observation, judged against its effect (``stats.observed``) unless ``result`` is given."""
    e = EFFECTS[claim]
    return _row(claim, statistic, None, words, observed(statistic, e.size, e.side) if result is None else result)


def unfitted_words(fit_epoch: Any) -> str:
    """Why a run's post-fit change is not testable, in words."""
    if fit_epoch is None or pd.isna(fit_epoch):
        return "the noisy-label accuracy never stays at 99% for five epochs in a row"
    return f"the noisy labels are fitted and held only from epoch {int(fit_epoch)}, too late to compare with the end"


def layer_words(layer: int, layers: int) -> str:
    """``layer 4 of 6``."""
    return f"layer {layer} of {layers}"


def metric_rows(metrics: pd.DataFrame, held_noisy: float, peak_to_dip: dict[str, Any], post_fit: dict[str, Any],
                n_test: int) -> list[dict[str, Any]]:
    """The claims that need only the metrics and the test record (clean first, noisy fit, the dip,
    the post-fit rise), as rows still to be judged (``_judge``)."""
    m = metrics
    rows: list[dict[str, Any]] = []
    clean50, noisy50 = first_epoch_at(m, "clean_acc"), first_epoch_at(m, "noisy_acc")
    lead = np.nan if clean50 is None else (float(m["epoch"].max()) + 1 - clean50 if noisy50 is None
                                           else float(noisy50 - clean50))
    rows.append(_observation("clean_first", lead, f"clean at epoch {clean50}, noisy at epoch {noisy50}"))
    rows.append(_observation("noisy_fit", held_noisy,
                             f"lowest noisy-label accuracy over the last tenth of training {held_noisy:.1%} "
                             f"(highest ever {float(m['noisy_acc'].max()):.1%})"))
    d = peak_to_dip
    if np.isfinite(d["change"]):
        ci = Interval(d["change"], d["low"], d["high"], n_test)
        rows.append(_row("test_dip", d["change"], ci, outcome(ci, "rises", "falls")))
    else:
        rows.append(_observation("test_dip", np.nan, "no early peak", RULED_OUT))
    p = post_fit
    if p["outcome"] == NOT_TESTABLE:
        rows.append(_row("post_fit_rise", np.nan, None, unfitted_words(p["fit_epoch"]), NOT_TESTABLE))
    else:
        ci = Interval(p["change"], p["low"], p["high"], n_test)
        rows.append(_row("post_fit_rise", p["change"], ci,
                         f"from the fit (epoch {p['fit_epoch']}) to the end: {p['outcome']}; "
                         f"{grid_range_words(p['grid'])}" if "grid" in p else
                         f"from the fit (epoch {p['fit_epoch']}) to the end: {p['outcome']}"))
    return rows


def judged_metric_claims(metrics: pd.DataFrame, held_noisy: float, peak_to_dip: dict[str, Any],
                         post_fit: dict[str, Any], grid: pd.DataFrame, n_test: int) -> pd.DataFrame:
    """``metric_rows`` judged on their own (Holm over these claims alone), the post-fit rise limited
    by its sensitivity grid: for a run whose other records are not at hand (a sweep's tables)."""
    rows = metric_rows(metrics, held_noisy, {**peak_to_dip}, {**post_fit, "grid": grid}, n_test)
    table = _judge(pd.DataFrame(rows))
    i = table.index[table["claim"] == "post_fit_rise"]
    table.loc[i, "verdict"] = [flip_limited(v, grid_verdicts(grid)) for v in table.loc[i, "verdict"]]
    return table


def metric_verdicts(curves: Curves) -> dict[str, Any]:
    """From a run's metrics and test record alone (``Curves``): the post-fit change and the claims
    that need nothing else (``judged_metric_claims``), for a sweep whose run directories are not at
    hand. Keys: ``phases`` (``detect_phases``), ``post_fit`` (``post_fit_change``), ``claims``."""
    phases = detect_phases(curves.metrics, n_test=curves.n_test).as_dict()
    post_fit = post_fit_change(curves)
    claims = judged_metric_claims(curves.metrics, held_noisy_level(curves.metrics), peak_to_dip_change(curves, phases),
                                  post_fit, sensitivity_grid(curves), curves.n_test)
    return {"phases": phases, "post_fit": post_fit, "claims": claims}


def claims_from(s: RunSummary, threshold: float = 100.0) -> pd.DataFrame:
    """Every claim of ``CLAIMS`` on one run's summary: one row each (columns ``COLUMNS``)."""
    rows = metric_rows(s.metrics, s.held_noisy, s.peak_to_dip, {**s.post_fit, "grid": s.post_fit_grid}, s.n_test)
    if s.depth is None:
        why = "no split-half baseline recorded"
        rows += [_row(c, np.nan, None, why, NOT_TESTABLE) for c in ("outer_separates", "separation_depth")]
    else:
        dp = s.depth
        outer = Interval(dp["outer"], dp["outer_low"], dp["outer_high"], 10)
        trend = Interval(dp["trend"], dp["trend_low"], dp["trend_high"], 10)
        net = "net of unseen images" if dp.get("net") else "no unseen images recorded, not net of them"
        rows.append(_row("outer_separates", dp["outer"], outer,
                         f"{outcome(outer, 'separates', 'closer than baseline')} ({net}; "
                         f"{dp.get('outer_gross', np.nan):.2f} before)"))
        rows.append(_row("separation_depth", dp["trend"], trend,
                         outcome(trend, "grows with depth", "shrinks with depth")))
    rows += _large_rows(s, threshold)
    return _finish(rows, s)


def _large_rows(s: RunSummary, threshold: float) -> list[dict[str, Any]]:
    """The five large-activation claims of one run."""
    g = s.large
    where = layer_words(g["layer"], g["layers"])
    if not g["recorded"]:  # schema 1: the top neuron's stored activations, no per-image top neuron
        growing = g["growth"] >= EFFECTS["large_exists"].size
        words = (f"{where}, neuron {g['neuron']}: median per-image ratio {g['ratio']:.1f}x ({g['growth']:.1f}x its "
                 f"initial {g['ratio_at_init']:.1f}x), active on {g['active']:.0%} of the probe images; "
                 f"which neuron tops each image is not recorded")
        rows = [_observation("large_exists", g["growth"], words, NOT_TESTABLE),
                _observation("large_100x", g["ratio"], f"median per-image ratio of the top neuron {g['ratio']:.1f}x")]
        rows.append(_observation("large_shallow", g["layer"] / g["layers"], where) if growing else
                    _observation("large_shallow", np.nan, "no growing top neuron", NOT_TESTABLE))
        why = "no random-neuron controls recorded"
        rows += [_row("large_input", np.nan, None, why, NOT_TESTABLE),
                 _row("large_needed", np.nan, None, "no ablation computed", NOT_TESTABLE)]
        return rows
    exists = HOLDS if g["exists"] else RULED_OUT
    rows = [_observation("large_exists", g["growth"],
                         f"{where}: ratio {g['ratio']:.1f}x ({g['growth']:.2f}x its initial "
                         f"{g['ratio_at_init']:.1f}x), "
                         f"neuron {g['neuron']} tops {g['dominance']:.0%} of images ({g['dominance_at_init']:.0%} at "
                         f"initialisation)", exists),
            _observation("large_100x", g["ratio"], f"median per-image ratio {g['ratio']:.1f}x")]
    none = "no large activation to test"
    if not g["exists"]:
        return rows + [_row(c, np.nan, None, none, NOT_TESTABLE)
                       for c in ("large_shallow", "large_input", "large_needed")]
    rows.append(_observation("large_shallow", g["layer"] / g["layers"], where))
    a = s.correlations.attrs
    diff = Interval(a["input_r"] - a["output_r"], a["input_r_low"] - a["output_r_high"],
                    a["input_r_high"] - a["output_r_low"], int(s.correlations["n"].iloc[0]))
    beyond = a["input_percentile"] >= 0.95
    rows.append(_row("large_input", diff.estimate, diff,
                     f"input |r| {a['input_r']:.2f} (random neurons' percentile {a['input_percentile']:.0%}), "
                     f"output |r| {a['output_r']:.2f}" + ("" if beyond else f"; {NOT_BEYOND}"),
                     None if beyond else NOT_BEYOND))
    ab = s.ablation
    if ab is None:
        rows.append(_row("large_needed", np.nan, None, "no ablation computed", NOT_TESTABLE))
    else:
        ci = Interval(ab["d_test_acc"], ab["low"], ab["high"], s.n_test)
        rows.append(_row("large_needed", ab["d_test_acc"], ci,
                         f"{outcome(ci, 'helps', 'hurts')}; costs more than {ab['percentile']:.0%} of "
                         f"{ab['n_random']} random neurons" + ("" if ab["percentile"] >= 0.95 else f"; {NOT_BEYOND}"),
                         None if ab["percentile"] >= 0.95 else NOT_BEYOND))
    return rows


def _pending(result: Any) -> bool:
    """A row still to be judged from its interval (no verdict yet, or not beyond random neurons)."""
    return result is None or (isinstance(result, float) and np.isnan(result)) or result == NOT_BEYOND


def tested_interval(claim: str, statistic: float, low: float, high: float) -> tuple[Interval, float]:
    """The interval a claim's tests use and the effect they test against: a threshold claim's
    (``THRESHOLD_CLAIMS``) measured from its threshold, tested against it with no further effect;
    any other claim's as it is, against zero and its effect of interest."""
    e = EFFECTS[claim]
    if claim in THRESHOLD_CLAIMS:
        return Interval(statistic - e.size, low - e.size, high - e.size, 0), 0.0
    return Interval(statistic, low, high, 0), abs(e.size)


def _judge(rows: pd.DataFrame, df: int | None = None) -> pd.DataFrame:
    """p-values (raw and Holm-adjusted over the interval claims in ``rows``) and the verdicts of the
    rows still to judge (``_pending``; not beyond random neurons: at best inconclusive). Optional
    columns: ``dof`` (a row's own degrees of freedom, else ``df``), ``all_hold`` (False: the
    seeds do not all hold, so the row cannot either)."""
    rows = rows.copy()
    dofs = rows["dof"].tolist() if "dof" in rows else [df] * len(rows)
    dofs = [None if d is None or pd.isna(d) else int(d) for d in dofs]
    every = rows["all_hold"].tolist() if "all_hold" in rows else [True] * len(rows)
    raw = [p_values(*tested_interval(r.claim, r.statistic, r.low, r.high), EFFECTS[r.claim].side, d)
           if _pending(r.verdict) else (np.nan, np.nan) for r, d in zip(rows.itertuples(), dofs)]
    rows["p_holds"] = [p[0] for p in raw]
    rows["p_ruled_out"] = [p[1] for p in raw]
    rows["p_holds_holm"] = holm(rows["p_holds"].to_numpy())
    rows["p_ruled_out_holm"] = holm(rows["p_ruled_out"].to_numpy())
    out = []
    for r, all_hold in zip(rows.itertuples(), every):
        if not _pending(r.verdict):
            out.append(r.verdict)
            continue
        ci, effect = tested_interval(r.claim, r.statistic, r.low, r.high)
        v = verdict(ci, effect, EFFECTS[r.claim].side, r.p_holds_holm, r.p_ruled_out_holm)
        out.append(INCONCLUSIVE if v == HOLDS and (r.verdict == NOT_BEYOND or all_hold is False) else v)
    present = [v == RULED_OUT and r.claim not in THRESHOLD_CLAIMS and np.isfinite(r.p_holds) and
               (r.low > 0 if EFFECTS[r.claim].side == "above" else r.high < 0) for v, r in zip(out, rows.itertuples())]
    rows["outcome"] = [f"{o}; present but smaller than the effect of interest" if flag else o
                       for o, flag in zip(rows["outcome"], present)]
    rows["verdict"] = out
    return rows.drop(columns=[c for c in ("dof", "all_hold") if c in rows])


def _finish(rows: list[dict[str, Any]], s: RunSummary) -> pd.DataFrame:
    table = _judge(pd.DataFrame([{**s.key, **r} for r in rows]))
    grid = grid_verdicts(s.post_fit_grid)
    i = table.index[table["claim"] == "post_fit_rise"]
    table.loc[i, "verdict"] = [flip_limited(v, grid) for v in table.loc[i, "verdict"]]
    return table[COLUMNS]


def grid_verdicts(grid: pd.DataFrame) -> list[str]:
    """The verdict of the post-fit rise on each testable variant of a sensitivity grid (intervals alone)."""
    e = EFFECTS["post_fit_rise"]
    if grid is None or grid.empty:
        return []
    return [verdict(Interval(r.change, r.low, r.high, 0), e.size, e.side) for r in grid.itertuples()
            if np.isfinite(r.change)]


def flip_limited(result: str, grid: list[str]) -> str:
    """A verdict that another variant of the grid contradicts is at best inconclusive."""
    if result in (HOLDS, RULED_OUT) and any(g != result for g in grid):
        return INCONCLUSIVE
    return result


def grid_range_words(grid: pd.DataFrame) -> str:
    """``18 variants: -1.9 to +1.9 points, 3 rise, 10 inconclusive, 5 ruled out`` and the like."""
    ok = grid[np.isfinite(grid["change"].astype(float))]
    if ok.empty:
        return "no variant of the sensitivity grid is testable"
    counts = pd.Series(grid_verdicts(grid)).value_counts()
    parts = ", ".join(f"{n} {v}" for v, n in counts.items())
    return (f"{len(ok)} of {len(grid)} variants testable: {points(ok['change'].min())} to "
            f"{points(ok['change'].max())} points ({parts})")


def claims_over_seeds(claims: pd.DataFrame, grid: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per model and claim over seeds: counts of each verdict, the seed mean with its interval (spread
    no smaller than each seed's sampling noise), what the verdict rests on (``basis``), raw and
    Holm-adjusted p-values within the model, and the verdict. Threshold claims
    (``THRESHOLD_CLAIMS``) get the seeds' own t interval, judged against the threshold; on one seed
    they keep that seed's verdict, with ``basis`` saying it rests on a value alone. ``grid`` (per
    seed, ``post_fit_grid`` rows with model and seed) limits the post-fit rise by its sensitivity
    grid, variant by variant over seeds."""
    rows = []
    for (model, claim), g in claims.groupby(["model", "claim"], sort=False):
        testable = g[g["verdict"] != NOT_TESTABLE]
        with_interval = testable[np.isfinite(testable["low"].astype(float))]
        row = {"model": model, "claim": claim, "statement": CLAIMS.get(claim, claim),
               "effect": EFFECTS[claim].size if claim in EFFECTS else np.nan, "seeds": len(g),
               "testable": len(testable), "holds": int((g["verdict"] == HOLDS).sum()),
               "ruled_out": int((g["verdict"] == RULED_OUT).sum()),
               "inconclusive": int((g["verdict"] == INCONCLUSIVE).sum()), "grid": "", "outcome": ""}
        values = testable["statistic"].to_numpy(dtype=float)
        if testable.empty:
            rows.append({**row, "mean": np.nan, "low": np.nan, "high": np.nan, "basis": "",
                         "verdict": NOT_TESTABLE})
        elif len(with_interval) == len(testable):
            errors = [standard_error(Interval(r.statistic, r.low, r.high, 0)) for r in testable.itertuples()]
            ci = seed_interval(values, errors=errors)
            pending = NOT_BEYOND if testable["outcome"].astype(str).str.contains(NOT_BEYOND).any() else None
            rows.append({**row, "mean": ci.estimate, "low": ci.low, "high": ci.high, "basis": ci.method,
                         "verdict": pending, "dof": ci.n - 1 if ci.n > 1 else None})
        elif claim in THRESHOLD_CLAIMS and len(testable) > 1 and np.isfinite(values).all():
            ci = seed_interval(values)
            basis = f"{ci.method}; {NO_SPREAD}" if np.ptp(values) == 0 else ci.method
            rows.append({**row, "mean": ci.estimate, "low": ci.low, "high": ci.high, "basis": basis,
                         "verdict": None, "dof": ci.n - 1, "all_hold": bool((testable["verdict"] == HOLDS).all())})
        else:
            agree = testable["verdict"].iloc[0] if testable["verdict"].nunique() == 1 else INCONCLUSIVE
            rows.append({**row, "mean": float(np.nanmean(values)) if np.isfinite(values).any() else np.nan,
                         "low": np.nan, "high": np.nan, "verdict": agree,
                         "basis": ONE_VALUE if len(testable) == 1 else "the seeds' values, no interval"})
    table = pd.DataFrame(rows)
    table = pd.concat([_judge(g.rename(columns={"mean": "statistic"})).rename(columns={"statistic": "mean"})
                       for _, g in table.groupby("model", sort=False)]).sort_index()
    if grid is not None and not grid.empty:
        for i in table.index[table["claim"] == "post_fit_rise"]:
            cells = grid_over_seeds(grid[grid["model"] == table.at[i, "model"]])
            table.at[i, "grid"] = grid_range_words(cells) if len(cells) else ""
            table.at[i, "verdict"] = flip_limited(table.at[i, "verdict"], grid_verdicts(cells))
    return table[OVER_COLUMNS].reset_index(drop=True)


def grid_over_seeds(grid: pd.DataFrame) -> pd.DataFrame:
    """Per variant of the sensitivity grid: the seed mean of the post-fit change with its interval
    (as ``claims_over_seeds``); NaN where a seed is not testable in that variant."""
    rows = []
    for key, g in grid.groupby(["level", "window", "end_fraction"]):
        if not np.isfinite(g["change"].astype(float)).all():
            rows.append(dict(zip(["level", "window", "end_fraction"], key), change=np.nan, low=np.nan, high=np.nan))
            continue
        errors = [standard_error(Interval(r.change, r.low, r.high, 0)) for r in g.itertuples()]
        ci = seed_interval(g["change"].to_numpy(dtype=float), errors=errors)
        rows.append(dict(zip(["level", "window", "end_fraction"], key), change=ci.estimate, low=ci.low, high=ci.high))
    return pd.DataFrame(rows)


def claim_counts(claims: pd.DataFrame, grid: pd.DataFrame | None = None) -> pd.DataFrame:
    """Claims (by id) x models: "holds (3 seeds)" and the like, or "not testable", in ``CLAIMS`` order."""
    over = claims_over_seeds(claims, grid)
    text = over.apply(lambda r: NOT_TESTABLE if r["testable"] == 0 else f"{r['verdict']} ({seeds_text(r['testable'])})",
                      axis=1)
    table = over.assign(text=text).pivot(index="claim", columns="model", values="text")
    order = [c for c in CLAIMS if c in table.index]
    models = list(dict.fromkeys(claims["model"]))
    return table.loc[order, models].rename_axis("claim").rename_axis(None, axis=1)


def seeds_text(n: int, basis: str = "") -> str:
    """``1 seed`` / ``3 seeds``; ``1 seed, its value alone`` where the verdict has no interval;
    ``3 seeds, all equal`` where the seeds agree exactly (an interval of no width)."""
    note = (", its value alone" if basis == ONE_VALUE else
            ", all equal" if isinstance(basis, str) and NO_SPREAD in basis else "")
    return f"{int(n)} seed{'s' if int(n) != 1 else ''}{note}"


def basis_label(basis: str) -> str:
    """What an over-seeds interval comes from, in a few words for a table column: ``3 seeds``,
    ``3 seeds, images`` (spread at least each seed's sampling noise), ``3 seeds, all equal`` (no
    spread: an interval of no width), ``1 seed's images``, ``none``."""
    if not isinstance(basis, str) or not basis:
        return ""
    if basis == ONE_VALUE or "no interval" in basis:
        return "none"
    if basis.startswith("one seed"):
        return "1 seed's images"
    words = basis.split()
    n = words[3] if basis.startswith("t interval over") else "?"
    if NO_SPREAD in basis:
        return f"{n} seeds, all equal"
    return f"{n} seeds, images" if "sampling noise" in basis else f"{n} seeds"


# --------------------------------------------------------------------------- in words
def points(x: float) -> str:
    """An accuracy change in percentage points, e.g. ``+1.2``."""
    return f"{100 * x:+.1f}"


#: How a claim's statistic reads in a sentence: scale, number format, unit.
STATISTIC_FORMATS: dict[str, tuple[float, str, str]] = {
    **{c: (100.0, "{:+.1f}", " points") for c in ACCURACY_CLAIMS},
    "clean_first": (1.0, "{:+.0f}", " epochs"), "noisy_fit": (100.0, "{:.1f}", "% held"),
    "large_exists": (1.0, "{:.2f}", "x its initial ratio"), "large_100x": (1.0, "{:.1f}", "x the median"),
    "large_shallow": (1.0, "{:.2f}", " of the depth"), "outer_separates": (1.0, "{:+.2f}", " (net index)"),
    "separation_depth": (1.0, "{:+.2f}", " (net index)"),
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
        return text + f"; {unfitted_words(post_fit.get('fit_epoch'))}; it ends at {phases['final_test_acc']:.1%}"
    return (text + f"; from the noisy fit (epoch {int(post_fit['fit_epoch'])}) to the end its test accuracy "
            f"changes by {interval_text(post_fit['change'], post_fit['low'], post_fit['high'])} points: "
            f"{post_fit['outcome']}")


def over_seeds_sentence(over: pd.DataFrame, claim: str, models: list[str] | None = None) -> str:
    """Per model: the verdict of ``claim`` over seeds with its mean statistic, interval and seed count."""
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
        parts.append(f"{str(r['model']).upper()} {stat}{unit}: {r['verdict']} "
                     f"({seeds_text(r['testable'], r.get('basis', ''))})")
    return "; ".join(parts)


def verdict_phrase(over: pd.DataFrame, claim: str, model: str) -> str:
    """The over-seeds verdict of one claim and model in words: "holds (3 seeds)" and the like."""
    rows = over[(over["claim"] == claim) & (over["model"] == model)]
    if rows.empty or int(rows["testable"].iloc[0]) == 0:
        return NOT_TESTABLE
    r = rows.iloc[0]
    return f"{r['verdict']} ({seeds_text(r['testable'], r.get('basis', ''))})"


def claims_by_verdict(over: pd.DataFrame, verdict: str) -> str:
    """The claims (``SHORT_NAMES``) whose over-seeds verdict is ``verdict``, per model, models with the
    same list joined: "MLP5, MLP7: a, b; MLP3: c", or "none"."""
    lists: dict[str, list[str]] = {}
    for model, g in over.groupby("model", sort=False):
        rows = g[g["verdict"] == verdict]
        basis = rows["basis"] if "basis" in rows else pd.Series("", index=rows.index)
        names = [SHORT_NAMES.get(c, c) + (" (its value alone)" if b == ONE_VALUE else "")
                 for c, b in zip(rows["claim"], basis)]
        if names:
            lists.setdefault(", ".join(names), []).append(str(model).upper())
    return "; ".join(f"{' and '.join(models)}: {names}" for names, models in lists.items()) or "none"


def models_where(over: pd.DataFrame, claim: str, verdict: str = HOLDS) -> str:
    """The models (upper case, in table order) whose over-seeds verdict of ``claim`` is ``verdict``, or "none"."""
    rows = over[(over["claim"] == claim) & (over["verdict"] == verdict)]
    return ", ".join(str(m).upper() for m in rows["model"]) or "none"
