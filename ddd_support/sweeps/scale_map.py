"""The scale map: where each finding holds over the axes of a one-axis-at-a-time sweep.

A scale-map sweep has a ``base`` point and points that each change one value of it (training-set
size, batch size, width, depth, learning rate, run length). Every run is placed on the map by
its own configuration (``run_axes``): the value of each axis and the one axis on which it leaves
the base. A finding (a claim of ``analysis.claims``) is then summarised per point
(``finding_cells``): how many seeds it holds in, and its statistic over seeds with an interval
(Student t over the testable seeds; with one seed, that run's own interval where the claim has
one). The large activation also has a time axis (``activation_by_length``): the existence test
at the last snapshot up to each run length, so a 300-epoch run also answers 50, 100 and 150.

An axis *moves* a finding when, at one of its values, the share of seeds in which the finding
holds differs from the base's share by at least one half (``MOVE_SHARE``); otherwise it does not
move it within this grid. The sentences (``axis_sentence``, ``cells_sentence``) are written from
these tables.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ddd_support.analysis.large_activation import candidate_layer, large_activation_exists
from ddd_support.analysis.stats import HOLDS, NOT_TESTABLE, RULED_OUT, seed_interval
from ddd_support.config import TrainConfig
from ddd_support.sweeps.spec import SweepSpec, expand

#: The map's axes, in the order the book shows them: name -> (label, value of a configuration).
AXES: dict[str, tuple[str, Any]] = {
    "n_train": ("training images", lambda c: c.n_train),
    "batch_size": ("batch size", lambda c: c.batch_size),
    "width": ("hidden width", lambda c: c.widths[0]),
    "depth": ("hidden layers", lambda c: len(c.widths)),
    "lr": ("learning rate", lambda c: c.lr),
    "epochs": ("epochs", lambda c: c.epochs),
}
BASE = "base"
#: A change of the share of seeds in which a finding holds that counts as moving it.
MOVE_SHARE = 0.5
#: Run lengths at which the large activation is read off every run long enough.
LENGTHS: tuple[int, ...] = (50, 100, 150, 300)
KEYS = ["point", "model", "seed"]
#: Config keys the axes read or that name a run; any other difference from the base is off the map.
_ON_THE_MAP = frozenset({"n_train", "batch_size", "base_width", "hidden_widths", "model", "lr", "epochs", "seed",
                         "profile", "threads", "progress", "device", "data_root"})


def axis_values(cfg: TrainConfig) -> dict[str, Any]:
    """The value of every map axis for one run's configuration."""
    return {axis: read(cfg) for axis, (_, read) in AXES.items()}


def run_axes(spec: SweepSpec) -> pd.DataFrame:
    """One row per run of ``spec``: point, model, seed, every axis's value, and ``axis``: the one axis
    on which the run leaves the base point's first run (``base`` on none, ``several`` on more or on
    a value that no axis shows, such as the noise rate)."""
    runs = expand(spec)
    base = [r for r in runs if r.point == BASE]
    if not base:
        raise ValueError(f"sweep {spec.name} has no base point (an empty entry under points): "
                         "the scale map compares every point with it")
    reference = axis_values(base[0].config)
    rest = lambda c: {k: v for k, v in c.to_dict().items() if k not in _ON_THE_MAP}  # noqa: E731
    rows = []
    for r in runs:
        values = axis_values(r.config)
        changed = [a for a in AXES if values[a] != reference[a]]
        off_map = rest(r.config) != rest(base[0].config)   # e.g. another noise rate: on no axis of the map
        axis = "several" if off_map or len(changed) > 1 else changed[0] if changed else BASE
        rows.append({"point": r.point, "model": r.config.model, "seed": r.config.seed, **values, "axis": axis})
    return pd.DataFrame(rows)


def finding_runs(claims: pd.DataFrame, axes: pd.DataFrame, claim: str) -> pd.DataFrame:
    """The rows of ``claim`` (a sweep's claims table) with each run's axes; runs without it are left out."""
    rows = claims[claims["claim"] == claim]
    return axes.merge(rows[[*KEYS, "statistic", "low", "high", "outcome", "verdict"]], on=KEYS, how="inner")


def cell_summary(runs: pd.DataFrame) -> dict[str, Any]:
    """Counts of one cell's verdicts, its statistic over the testable seeds and its interval."""
    testable = runs[runs["verdict"] != NOT_TESTABLE]
    holds = int((testable["verdict"] == HOLDS).sum())
    ci = seed_interval(testable["statistic"].to_numpy(dtype=float))
    low, high = ci.low, ci.high
    if len(testable) == 1:   # one seed: the run's own interval, where the claim has one
        low, high = float(testable["low"].iloc[0]), float(testable["high"].iloc[0])
    return {"runs": len(runs), "testable": len(testable), "holds": holds,
            "share": holds / len(testable) if len(testable) else np.nan,
            "mean": ci.estimate, "low": low, "high": high}


def finding_cells(claims: pd.DataFrame, axes: pd.DataFrame, claim: str) -> pd.DataFrame:
    """Per point: its axis and value, and ``cell_summary`` of ``claim`` over its seeds."""
    return cells_of(finding_runs(claims, axes, claim), "point", "model")


def cells_of(runs: pd.DataFrame, *by: str) -> pd.DataFrame:
    """``cell_summary`` of ``runs`` (rows with axes, statistic, low, high, verdict) grouped by ``by``."""
    rows = []
    for key, part in runs.groupby(list(by), sort=False):
        first = part.iloc[0]
        label = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        value = first[first["axis"]] if first["axis"] in AXES else np.nan
        rows.append({**label, "axis": first["axis"], "value": value, **cell_summary(part)})
    return pd.DataFrame(rows)


def activation_by_length(activation: pd.DataFrame, axes: pd.DataFrame,
                         lengths: tuple[int, ...] = LENGTHS) -> pd.DataFrame:
    """The large activation of every run at each of ``lengths`` it reaches and at its own end: at its
    last snapshot up to that epoch, the candidate layer (``candidate_layer``), its growth, dominance and ratio, and
    ``verdict``: holds when the existence test passes there. Rows carry the run's axes."""
    rows = []
    for key, table in activation.groupby(KEYS, sort=False):
        end = int(table["epoch"].max())
        for length in sorted({*(n for n in lengths if n <= end), end}):
            upto = table[table["epoch"] <= length]
            layer, _ = candidate_layer(upto)
            last = upto[(upto["epoch"] == upto["epoch"].max()) & (upto["layer"] == layer)].iloc[0]
            exists = large_activation_exists(last)
            rows.append({**dict(zip(KEYS, key)), "length": length, "epoch": int(last["epoch"]), "layer": layer,
                         "growth": float(last["growth"]), "dominance": float(last["dominance"]),
                         "ratio": float(last["ratio"]), "statistic": float(last["growth"]),
                         "low": np.nan, "high": np.nan, "verdict": HOLDS if exists else RULED_OUT})
    return axes.merge(pd.DataFrame(rows), on=KEYS, how="inner")


def length_cells(by_length: pd.DataFrame) -> pd.DataFrame:
    """``cell_summary`` of the large activation's existence per point and run length."""
    return cells_of(by_length, "point", "model", "length")


def activation_runs(by_length: pd.DataFrame, statistic: str = "growth") -> pd.DataFrame:
    """Each run's large activation at its own full length, with ``statistic`` (growth, dominance or
    ratio) as the statistic of its cell and the existence test as its verdict."""
    last = by_length[by_length["length"] == by_length.groupby(KEYS)["length"].transform("max")]
    return last.assign(statistic=last[statistic])


def grid_overview(axes: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """One row per cell of the map: its axis and value, seeds trained, minutes per run (train and
    evaluation, as recorded) and final test accuracy (mean over its seeds)."""
    runs = axes.merge(table[[*KEYS, "train_seconds", "eval_seconds", "final_test_acc"]], on=KEYS, how="inner")
    rows = []
    for (point, model), part in runs.groupby(["point", "model"], sort=False):
        first = part.iloc[0]
        rows.append({"point": point, "model": model, "axis": first["axis"],
                     "value": first[first["axis"]] if first["axis"] in AXES else np.nan,
                     "seeds": ", ".join(str(s) for s in sorted(part["seed"])),
                     "minutes_per_run": float((part["train_seconds"] + part["eval_seconds"]).mean() / 60),
                     "final_test_acc": float(part["final_test_acc"].mean())})
    return pd.DataFrame(rows)


def axis_moves(cells: pd.DataFrame) -> dict[str, bool]:
    """For every axis of ``cells`` (besides the base): does it move the finding (``MOVE_SHARE``)?"""
    base = cells[cells["axis"] == BASE]
    if base.empty or not np.isfinite(base["share"].iloc[0]):
        return {}
    share = float(base["share"].iloc[0])
    out = {}
    for axis, part in cells[~cells["axis"].isin([BASE, "several"])].groupby("axis", sort=False):
        shares = part["share"].dropna()
        out[axis] = bool(len(shares) and (abs(shares - share) >= MOVE_SHARE).any())
    return out


def _value_text(axis: str, value: Any) -> str:
    if axis == "lr":
        return f"{float(value):g}"
    return f"{int(value):,}" if float(value).is_integer() else f"{value}"


def _cell_text(row: pd.Series | Any, fmt: str) -> str:
    if row.testable == 0:
        return NOT_TESTABLE
    stat = fmt.format(row.mean)
    if np.isfinite(row.low) and np.isfinite(row.high):
        stat += f" [{fmt.format(row.low)}, {fmt.format(row.high)}]"
    return f"{row.holds} of {row.testable} ({stat})"


def cell_label(axis: str, value: Any, point: str, model: str) -> str:
    """How a cell is named in sentences and legends: ``base``, ``batch size 256``, or its point and model."""
    if axis == BASE:
        return BASE
    if axis in AXES:
        return f"{AXES[axis][0]} {_value_text(axis, value)}"
    return f"{point} ({str(model).upper()})"


def cells_sentence(cells: pd.DataFrame, fmt: str = "{:.2f}") -> str:
    """Where a finding holds, cell by cell: "base: 2 of 3 (2.41 [1.2, 3.6]); batch size 256: 0 of 2 (...)"."""
    return "; ".join(f"{cell_label(row.axis, row.value, row.point, row.model)}: {_cell_text(row, fmt)}"
                     for row in cells.itertuples())


def length_sentence(cells: pd.DataFrame, fmt: str = "{:.2f}x") -> str:
    """The time axis in words, cell by cell: "base: epoch 50 0 of 3 (1.1x ...), epoch 150 2 of 3 (...)"."""
    parts = []
    for (point, model), part in cells.groupby(["point", "model"], sort=False):
        first = part.iloc[0]
        steps = ", ".join(f"epoch {int(row.length)} {_cell_text(row, fmt)}" for row in part.itertuples())
        parts.append(f"{cell_label(first['axis'], first['value'], point, model)}: {steps}")
    return "; ".join(parts)


def profile_sentence(cells: pd.DataFrame, at_least: int = 2) -> str:
    """Which cells meet the profile criterion (the finding holds in at least ``at_least`` seeds), or,
    if none does, that none does and where it holds in fewer."""
    def names(rows: pd.DataFrame) -> str:
        return ", ".join(f"{cell_label(r.axis, r.value, r.point, r.model)} ({r.holds} of {r.testable})"
                         for r in rows.itertuples())

    met = cells[cells["holds"] >= at_least]
    if len(met):
        return f"it holds in at least {at_least} seeds at {names(met)}"
    some = cells[cells["holds"] > 0]
    return (f"no cell of the map shows it in {at_least} seeds or more"
            + (f"; it holds in fewer at {names(some)}" if len(some) else ", nor in any seed at all"))


def axis_sentence(cells: pd.DataFrame) -> str:
    """Which axes move a finding and which do not, by ``axis_moves``."""
    moves = axis_moves(cells)
    if not moves:
        return "not testable at the base point, so no axis can be said to move it"
    moving = [AXES[a][0] for a, m in moves.items() if m]
    still = [AXES[a][0] for a, m in moves.items() if not m]
    text = (f"moved by {', '.join(moving)}" if moving else "moved by no axis of this grid")
    return text + (f"; not moved by {', '.join(still)}" if still else "")


