r"""A sweep's results: one row per run (``sweep.csv``), its curves (``sweep_epochs.csv``), its record.

Besides the final metrics, the phases and each run's claims (``analysis.claims``), a row holds
the *overfitting rise*: how much test error grows from its best epoch to the end of the run.
Choosing the best epoch on the same images it is measured on would bias the rise upwards, so
the test images are split in two halves by index parity; the best epoch :math:`b` is chosen on
half A and the rise measured on half B, paired over its images:

.. math::

   \text{rise} = \frac{1}{|B|}\sum_{i\in B}\bigl(c_{i,b} - \bar c_{i,\text{end}}\bigr),
   \qquad b = \arg\max_e \frac{1}{|A|}\sum_{i\in A} c_{i,e},

with :math:`\bar c_{i,\text{end}}` the mean correctness over the last 10% of the epochs. Its 95%
interval is the paired one (``stats.paired_change``); a rise inside it is no detectable change.
"""

from __future__ import annotations

import math
import shutil
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import yaml

from ddd_support.analysis.claims import CLAIMS, COLUMNS, claims_from, interval_text, metric_verdicts
from ddd_support.analysis.large_activation import per_image_table
from ddd_support.analysis.regeneralisation import Curves
from ddd_support.analysis.stats import HOLDS, INCONCLUSIVE, NOT_TESTABLE, outcome, paired_change
from ddd_support.analysis.summary import summarise_run
from ddd_support.config import TrainConfig, resume_insensitive_keys
from ddd_support.errors import ConfigError, RunDirError
from ddd_support.files import atomic_savez, atomic_write_json, atomic_write_text, now_iso, read_json
from ddd_support.runs.reader import RunData, load_run
from ddd_support.runs.recorder import state_is_complete
from ddd_support.runs.schema import CONFIG_FILE, METRIC_COLUMNS, config_differences, provenance, run_directory
from ddd_support.sweeps.spec import SweepPoint, SweepSpec, expand, load_spec, run_root, sweep_dir

SWEEP_TABLE, EPOCH_TABLE, RECORD = "sweep.csv", "sweep_epochs.csv", "sweep.json"
#: Per-image test correctness of every run (bit-packed), so the rise can be checked on read.
CORRECT_FILE = "sweep_test_correct.npz"
FILES: tuple[str, ...] = (RECORD, SWEEP_TABLE, EPOCH_TABLE, CORRECT_FILE, "spec.yaml")
#: Every claim's statistic and interval per run, and the large activation per run, snapshot and
#: layer (``sweep_tables``): the scale map reads them; sweeps written before them lack them.
CLAIMS_TABLE, ACTIVATION_TABLE = "sweep_claims.csv", "sweep_activation.csv"
DETAIL_FILES: tuple[str, ...] = (CLAIMS_TABLE, ACTIVATION_TABLE)
#: Columns of ``sweep.csv`` besides the varied keys and the claims.
RUN_COLUMNS: tuple[str, ...] = (
    "point", "model", "seed", "n_train", "n_test", "epochs", "widths", "noise_rate", "lr",
    "final_test_acc", "final_train_acc", "final_noisy_acc", "best_test_acc", "best_test_epoch",
    "rise", "rise_low", "rise_high", "rise_outcome", "best_epoch_half_a",
    "test_peak_epoch", "test_dip_epoch", "noisy_fit_end_epoch", "post_fit_change", "post_fit_outcome",
    "run_dir",
)
END_FRACTION = 0.1


def overfitting_rise(correct: np.ndarray, end_fraction: float = END_FRACTION) -> dict[str, Any]:
    """The rise of test error from the best epoch (chosen on half A) to the end (measured on half B).

    ``correct``: (epochs + 1, n_test) per-image correctness from epoch 0. Returns the best epoch,
    the rise (in accuracy points as a fraction), its paired interval and its outcome.
    """
    correct = np.asarray(correct, dtype=float)
    if correct.ndim != 2 or correct.shape[0] < 3 or correct.shape[1] < 4:
        raise ValueError(f"need (epochs + 1, n_test) correctness with >= 3 epochs and >= 4 images, got {correct.shape}")
    best = best_epoch_half_a(correct)
    half_b = correct[:, 1::2]
    ci = paired_change(end_correctness(half_b, end_fraction), half_b[best])
    return {"best_epoch_half_a": best, "rise": ci.estimate, "rise_low": ci.low, "rise_high": ci.high,
            "rise_outcome": outcome(ci, "rises", "falls")}


def with_width(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with a ``width`` column: the first hidden width of each run's ``widths`` (``64-64-64-64`` -> 64)."""
    return table.assign(width=[int(str(w).split("-")[0]) for w in table["widths"]])


def best_epoch_half_a(correct: np.ndarray) -> int:
    """The epoch (from 1: initialisation is not a candidate) of highest accuracy on the even test images."""
    return int(np.argmax(np.asarray(correct, dtype=float)[1:, 0::2].mean(axis=1))) + 1


def image_rise(correct: np.ndarray, end_fraction: float = END_FRACTION) -> np.ndarray:
    """Each half-B image's rise of error: its correctness at the half-A best epoch minus its end mean."""
    correct = np.asarray(correct, dtype=float)
    half_b = correct[:, 1::2]
    return half_b[best_epoch_half_a(correct)] - end_correctness(half_b, end_fraction)


def run_claims(run: RunData) -> pd.DataFrame | None:
    """Every claim of ``run`` judged from its summary (``claims.claims_from``); None for a run without
    label noise, where the claims about noisy samples are not defined."""
    return claims_from(summarise_run(run)) if TrainConfig.from_dict(run.config).noise_rate > 0 else None


def run_row(run_point: SweepPoint, run: RunData, claims: pd.DataFrame | None) -> dict[str, Any]:
    """One row of ``sweep.csv``: the varied values, final metrics, rise, phases and the verdicts of
    ``claims`` (the run's ``run_claims``)."""
    run_dir = run.path
    if run.status != "complete":
        raise RunDirError(f"{run_dir} is not complete (status {run.status}); rerun the sweep to finish it")
    m = run.metrics
    last = m.iloc[-1]
    best = int(m["test_acc"].idxmax())
    cfg = TrainConfig.from_dict(run.config)   # the run's own record, not the spec
    row: dict[str, Any] = {
        **{k: getattr(cfg, k) for k in run_point.values}, "point": run_point.point, "model": cfg.model,
        "seed": cfg.seed,
        "n_train": int(len(run.labels["original"])), "n_test": int(len(run.labels["test_indices"])),
        "epochs": int(last["epoch"]), "widths": "-".join(map(str, cfg.widths)), "noise_rate": cfg.noise_rate,
        "lr": cfg.lr, "final_test_acc": float(last["test_acc"]),
        "final_train_acc": _train_acc(last, float(np.mean(run.labels["noisy_mask"]))),
        "final_noisy_acc": float(last["noisy_acc"]),
        "best_test_acc": float(m.loc[best, "test_acc"]), "best_test_epoch": int(m.loc[best, "epoch"]),
        "train_seconds": run.provenance.get("train_seconds_total"),
        "eval_seconds": run.provenance.get("eval_seconds_total"),
        "start_time": run.provenance.get("start_time"), "end_time": run.provenance.get("end_time"),
        "git_commit": run.provenance.get("git_commit"),
    }
    correct = run.test_correct
    if correct is None:
        raise RunDirError(f"{run_dir} has no per-image test record ({run_dir}/test_correct.npz); "
                          "sweeps need runs recorded by this version")
    row.update(overfitting_rise(correct))
    row.update(verdict_columns(m, correct, row["n_test"], cfg.noise_rate), run_dir=str(run_dir))
    if claims is not None:   # the claims that need the snapshots: from the run's summary
        for claim in CLAIMS:
            if claim not in METRIC_CLAIMS:
                row[f"claim_{claim}"] = claims.loc[claims["claim"] == claim, "verdict"].iloc[0]
    else:
        row.update({f"claim_{c}": NOT_TESTABLE for c in CLAIMS if c not in METRIC_CLAIMS})
    return row


#: The claims a sweep's own tables can judge (metrics and per-image test record, no snapshots).
METRIC_CLAIMS: tuple[str, ...] = ("clean_first", "noisy_fit", "test_dip", "post_fit_rise")


def verdict_columns(metrics: pd.DataFrame, correct: np.ndarray, n_test: int, noise_rate: float) -> dict[str, Any]:
    """The phase epochs, the post-fit change and the verdicts of ``METRIC_CLAIMS`` of one run from
    its metrics and per-image test record (``claims.metric_verdicts``), judged among themselves;
    without label noise the claims about noisy labels are not testable."""
    found = metric_verdicts(Curves(metrics.reset_index(drop=True), correct, int(n_test)))
    phases, post_fit, claims = found["phases"], found["post_fit"], found["claims"].set_index("claim")["verdict"]
    out = {"test_peak_epoch": phases["test_peak_epoch"], "test_dip_epoch": phases["test_dip_epoch"],
           "noisy_fit_end_epoch": phases["noisy_fit_end_epoch"], "post_fit_change": post_fit["change"],
           "post_fit_outcome": post_fit["outcome"]}
    for claim in METRIC_CLAIMS:
        out[f"claim_{claim}"] = NOT_TESTABLE if noise_rate == 0 else claims[claim]
    return out


def refresh_verdict_columns(folder: str | Path) -> Path:
    """Rewrite the verdict columns of a finished sweep's ``sweep.csv`` from its own epoch table and
    per-image record (``verdict_columns``), for the current definitions; the columns of claims that
    need the runs' snapshots are dropped, since the sweep's files cannot recompute them."""
    folder = Path(folder)
    spec, table, epochs, _ = read_sweep(folder)
    correct = read_correct(folder / CORRECT_FILE)
    rows = []
    for r in table.to_dict("records"):
        m = epochs[(epochs["point"] == r["point"]) & (epochs["model"] == r["model"]) & (epochs["seed"] == r["seed"])]
        found = verdict_columns(m.sort_values("epoch"), correct[run_key(r["point"], r["model"], r["seed"])],
                                int(r["n_test"]), float(r["noise_rate"]))
        rows.append({k: v for k, v in {**r, **found}.items()
                     if not (k.startswith("claim_") and k[len("claim_"):] not in METRIC_CLAIMS)})
    atomic_write_text(folder / SWEEP_TABLE, pd.DataFrame(rows).to_csv(index=False, float_format="%.10g"))
    return folder / SWEEP_TABLE


def _train_acc(last: pd.Series, noisy_share: float) -> float:
    """Accuracy on the training labels as given (clean and noisy samples weighted by their share)."""
    noisy = float(last["noisy_acc"]) if noisy_share > 0 and not math.isnan(last["noisy_acc"]) else 0.0
    return (1 - noisy_share) * float(last["clean_acc"]) + noisy_share * noisy


def run_key(point: str, model: str, seed: int) -> str:
    """The name of one run's array in ``sweep_test_correct.npz``."""
    return f"{point}|{model}|seed{int(seed)}"


class SweepTables(NamedTuple):
    """What a sweep's folder tabulates of its complete runs (``sweep_tables``)."""

    #: ``sweep.csv``: one row per run.
    runs: pd.DataFrame
    #: ``sweep_epochs.csv``: every run's metrics per epoch.
    epochs: pd.DataFrame
    #: Per-image test correctness per run (``run_key``), for ``sweep_test_correct.npz``.
    correct: dict[str, np.ndarray]
    #: ``CLAIMS_TABLE``: every claim with its statistic and interval, per run.
    claims: pd.DataFrame
    #: ``ACTIVATION_TABLE``: the per-image large activation per run, snapshot and layer.
    activation: pd.DataFrame
    #: The run directories that hold another configuration than the spec's (left out).
    mismatched: list[str]


def sweep_tables(spec: SweepSpec, out: str | Path) -> SweepTables:
    """The tables of every complete run of ``spec`` under ``out`` whose recorded configuration is the
    spec's; each run is read and summarised once."""
    rows, curves, correct, claims, activation = [], [], {}, [], []
    finished, mismatched = complete_runs(spec, out)
    for r, run_dir in finished:
        run = load_run(run_dir)
        judged = run_claims(run)
        rows.append(run_row(r, run, judged))
        correct[run_key(r.point, r.config.model, r.config.seed)] = run.test_correct
        curves.append(run.metrics.assign(point=r.point, model=r.config.model, seed=r.config.seed, **r.values))
        key = {"point": r.point, "model": r.config.model, "seed": r.config.seed}
        if judged is not None:
            claims.append(judged.drop(columns=["model", "seed", "statement"]).assign(**key))
        activation.append(per_image_table(run).assign(**key))
    table = pd.DataFrame(rows, columns=None if rows else [*spec.varied_keys, *RUN_COLUMNS])
    if len(table):
        table["run_dir"] = [str(Path(p).relative_to(sweep_dir(out, spec))) for p in table["run_dir"]]
    keys = ["point", "model", "seed", *spec.varied_keys]
    epochs = (pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(columns=[*keys, *METRIC_COLUMNS]))
    epochs = epochs[[*dict.fromkeys([*keys, *METRIC_COLUMNS])]]
    run_keys = ["point", "model", "seed"]
    claim_table = (pd.concat(claims, ignore_index=True) if claims
                   else pd.DataFrame(columns=[*run_keys, *(c for c in COLUMNS[2:] if c != "statement")]))
    act_table = pd.concat(activation, ignore_index=True) if activation else pd.DataFrame(columns=run_keys)
    order = lambda t: t[[*run_keys, *[c for c in t.columns if c not in run_keys]]]  # noqa: E731
    return SweepTables(table, epochs, correct, order(claim_table), order(act_table), mismatched)


def complete_runs(spec: SweepSpec, out: str | Path) -> tuple[list[tuple[SweepPoint, Path]], list[str]]:
    """The complete runs of ``spec`` under ``out`` whose recorded configuration is the spec's, with
    their directories, and the run directories that hold another configuration."""
    finished, mismatched = [], []
    for r in expand(spec):
        run_dir = run_directory(run_root(out, spec, r.point), r.config.profile, r.config.model, r.config.seed)
        if not (run_dir / CONFIG_FILE).exists():
            continue
        state = read_json(run_dir / CONFIG_FILE)
        recorded = TrainConfig.from_dict(state.get("config", {})).to_dict()
        if config_differences(recorded, r.config.to_dict(), resume_insensitive_keys(r.config) | {"epochs"}):
            mismatched.append(str(run_dir))
        elif not state_is_complete(state, r.config.epochs):
            continue
        elif int(state["epochs_done"]) != r.config.epochs:  # a longer run's rows are not this spec's results
            mismatched.append(f"{run_dir} (trained to {state['epochs_done']} epochs, the spec asks for "
                              f"{r.config.epochs})")
        else:
            finished.append((r, run_dir))
    return finished, mismatched


def read_detail_tables(folder: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A sweep folder's ``CLAIMS_TABLE`` and ``ACTIVATION_TABLE``; a RunDirError says how to write them."""
    folder = Path(folder)
    missing = [name for name in DETAIL_FILES if not (folder / name).exists()]
    if missing:
        raise RunDirError(f"{folder} lacks {', '.join(missing)}: its tables were written by an older version; "
                          "run its sweep command again (finished runs are not retrained) to write them")
    return pd.read_csv(folder / CLAIMS_TABLE), pd.read_csv(folder / ACTIVATION_TABLE)


def write_sweep_record(spec: SweepSpec, out: str | Path, extra: dict[str, Any]) -> tuple[Path, list[str]]:
    """Write ``sweep.csv``, ``sweep_epochs.csv``, ``sweep_test_correct.npz``, ``spec.yaml`` and
    ``sweep.json`` (spec, provenance, ``extra``); returns the folder and the run directories that
    hold another configuration than the spec's (left out of the tables)."""
    folder = sweep_dir(out, spec)
    folder.mkdir(parents=True, exist_ok=True)
    table, epochs, correct, claims, activation, mismatched = sweep_tables(spec, out)
    atomic_write_text(folder / SWEEP_TABLE, table.to_csv(index=False, float_format="%.10g"))
    atomic_write_text(folder / EPOCH_TABLE, epochs.to_csv(index=False, float_format="%.6g"))
    for name, detail in zip(DETAIL_FILES, (claims, activation)):
        atomic_write_text(folder / name, detail.to_csv(index=False, float_format="%.6g"))
    atomic_savez(folder / CORRECT_FILE, **{k: np.packbits(v.astype(bool), axis=1) for k, v in correct.items()},
                 **{f"{k}|n_test": np.int64(v.shape[1]) for k, v in correct.items()})
    atomic_write_text(folder / "spec.yaml", yaml.safe_dump(spec.to_dict(), sort_keys=False))
    atomic_write_json(folder / RECORD, {"spec": spec.to_dict(), "runs_planned": len(expand(spec)),
                                        "runs_complete": len(table), "written": now_iso(),
                                        "training_span": training_span(table), "mismatched": mismatched,
                                        "provenance": provenance("n/a"), **extra})
    return folder, mismatched


def training_span(table: pd.DataFrame) -> dict[str, Any]:
    """From the first run's start to the last run's end: the sweep's wall time of training."""
    if not len(table) or table["start_time"].isna().any() or table["end_time"].isna().any():
        return {}
    start, end = pd.to_datetime(table["start_time"]).min(), pd.to_datetime(table["end_time"]).max()
    return {"first_start": start.isoformat(), "last_end": end.isoformat(),
            "seconds": round((end - start).total_seconds(), 1),
            "run_seconds": round(float((table["train_seconds"] + table["eval_seconds"]).sum()), 1)}


def read_sweep(folder: str | Path) -> tuple[SweepSpec, pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """A sweep's spec, run table, curves and record, validated; a RunDirError says what is wrong.

    Checked: the files belong together (run counts), every curve has epochs 0, 1, 2, ... and its
    test accuracy equals the mean of its per-image record, and every rise in the table equals
    the rise recomputed from that record.
    """
    folder = Path(folder)
    for name in FILES:
        if not (folder / name).exists():
            raise RunDirError(f"{folder} lacks {name}: it is not a finished sweep; run "
                              f"`python -m ddd_support sweep SPEC.yaml` to make one")
    record = read_json(folder / RECORD)
    spec = load_spec(folder / "spec.yaml")   # keeps the order of the axes, which names the points
    if spec != SweepSpec.from_dict(record.get("spec", {}), source=f"{folder / RECORD}"):
        raise RunDirError(f"{folder}: spec.yaml and {RECORD} describe different sweeps; the files do not belong together")
    table, epochs = pd.read_csv(folder / SWEEP_TABLE), pd.read_csv(folder / EPOCH_TABLE)
    missing = [c for c in (*RUN_COLUMNS, *spec.varied_keys) if c not in table.columns]
    if missing:
        raise RunDirError(f"{folder / SWEEP_TABLE} lacks columns {missing}; rewrite it with this version")
    if len(table) != record.get("runs_complete"):
        raise RunDirError(f"{folder / SWEEP_TABLE} has {len(table)} runs, its record says "
                          f"{record.get('runs_complete')}: the files do not belong together")
    correct = read_correct(folder / CORRECT_FILE)
    curves = dict(tuple(epochs.groupby(["point", "model", "seed"])))
    for row in table.itertuples():
        key = (row.point, row.model, row.seed)
        name = run_key(*key)
        curve, bits = curves.get(key), correct.get(name)
        if curve is None or bits is None:
            raise RunDirError(f"{folder}: run {name} of {SWEEP_TABLE} has no curve or no per-image record")
        if not (curve["epoch"].to_numpy() == np.arange(len(curve))).all():
            raise RunDirError(f"{folder / EPOCH_TABLE}: the epochs of {name} are not 0, 1, 2, ...")
        if len(bits) != len(curve) or not np.allclose(bits.mean(axis=1), curve["test_acc"], atol=1e-5):
            raise RunDirError(f"{folder}: test accuracy of {name} in {EPOCH_TABLE} differs from its per-image "
                              f"record in {CORRECT_FILE}; the files were changed after the sweep")
        again = {**overfitting_rise(bits), "final_test_acc": float(bits[-1].mean())}
        if not all(again[k] == getattr(row, k) if isinstance(again[k], str) else np.isclose(again[k], getattr(row, k),
                                                                                             atol=1e-8)
                   for k in again):
            raise RunDirError(f"{folder / SWEEP_TABLE}: the rise or final accuracy of {name} differs from its "
                              "per-image record; the table was changed after the sweep")
    return spec, table, epochs, record


def read_correct(path: Path) -> dict[str, np.ndarray]:
    """The per-image correctness of each run from ``sweep_test_correct.npz`` (bool arrays)."""
    try:
        with np.load(path) as z:
            packed = {k: z[k] for k in z.files if not k.endswith("|n_test")}
            sizes = {k.removesuffix("|n_test"): int(z[k]) for k in z.files if k.endswith("|n_test")}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise RunDirError(f"{path} cannot be read ({exc}); write the sweep's tables again") from None
    if set(packed) != set(sizes):
        raise RunDirError(f"{path} is incomplete: runs without their image counts")
    return {k: np.unpackbits(v, axis=1, count=sizes[k]).astype(bool) for k, v in packed.items()}


def export_sweep(folder: str | Path, dest: str | Path) -> Path:
    """Copy a finished sweep's tables and record (no run directories) to ``dest/NAME``; the detail
    tables (``DETAIL_FILES``) where the sweep has them."""
    spec, _, _, _ = read_sweep(folder)
    target = Path(dest) / spec.name
    target.mkdir(parents=True, exist_ok=True)
    for name in (*FILES, *(n for n in DETAIL_FILES if (Path(folder) / n).exists())):
        shutil.copyfile(Path(folder) / name, target / f".{name}.tmp")
        (target / f".{name}.tmp").replace(target / name)
    return target


def rise_difference(table: pd.DataFrame, correct: dict[str, np.ndarray], widths: str, low_rate: float,
                    high_rate: float) -> dict[str, float]:
    """Rise at ``high_rate`` minus rise at ``low_rate`` for one width, with a 95% interval.

    Both runs score the same test images, so the difference is paired over the half-B images:
    each image's rise in one run minus its rise in the other (``image_rise``).
    """
    one_run_per_point(table)
    runs = {}
    for rate in (low_rate, high_rate):
        row = table[(table["widths"] == widths) & np.isclose(table["noise_rate"], rate)]
        if len(row) != 1:
            raise ValueError(f"need one run of widths {widths} at noise rate {rate}, found {len(row)}")
        r = row.iloc[0]
        runs[rate] = image_rise(correct[run_key(r["point"], r["model"], r["seed"])])
    ci = paired_change(runs[low_rate], runs[high_rate])
    return {"difference": ci.estimate, "low": ci.low, "high": ci.high}


def one_run_per_point(table: pd.DataFrame) -> None:
    """The comparisons across points take one model and one seed per point; a ConfigError otherwise."""
    if table["model"].nunique() > 1 or table.groupby("point").size().max() > 1:
        raise ConfigError("this view compares one run per point (one model, one seed); the sweep has "
                          f"models {sorted(table['model'].unique())} and up to "
                          f"{int(table.groupby('point').size().max())} runs per point. Select one model and seed "
                          "of the table first")


def peak_short(peaks: pd.DataFrame) -> str:
    """Where the model-wise peak holds, in a few words."""
    held = peaks.loc[peaks["verdict"] == HOLDS, "noise_rate"]
    rest = peaks.loc[peaks["verdict"] != HOLDS, "noise_rate"]
    if held.empty:
        return "not detectable at any noise rate"
    text = "holds at " + ", ".join(f"{r:.0%}" for r in held) + " noise"
    return text + (", not at " + ", ".join(f"{r:.0%}" for r in rest) if len(rest) else "")


def peak_sentence(peaks: pd.DataFrame) -> str:
    """Where the model-wise peak of final test error holds, with its paired differences."""
    held = peaks[peaks["verdict"] == HOLDS]
    if held.empty:
        return "at no noise rate does an intermediate width have a final test error above both ends"
    parts = [f"{r.noise_rate:.0%} noise (width {r.peak_width}: "
             f"{interval_text(r.over_narrowest, r.over_narrowest_low, r.over_narrowest_high)} points over the "
             f"narrowest, {interval_text(r.over_widest, r.over_widest_low, r.over_widest_high)} over the widest)"
             for r in held.itertuples()]
    rest = [f"{r:.0%}" for r in peaks.loc[peaks["verdict"] != HOLDS, "noise_rate"]]
    return "it holds at " + "; ".join(parts) + (f", and not at {', '.join(rest)} noise" if rest else "")


def sweep_findings(table: pd.DataFrame, correct: dict[str, np.ndarray]) -> dict[str, str]:
    """Sentences about a noise-rate x width sweep, generated from its table and per-image record
    (one model and one seed per point)."""
    if table.empty:
        raise RunDirError("the sweep has no complete run yet; finish it with the sweep command")
    one_run_per_point(table)

    out: dict[str, str] = {}
    noisy = table[table["noise_rate"] > 0]
    clean = table[table["noise_rate"] == 0]
    rises = noisy[noisy["rise_outcome"] == "rises"]
    out["rises"] = (f"test error rises beyond its 95% interval after its best epoch in {len(rises)} of "
                    f"{len(noisy)} runs with label noise and in "
                    f"{int((clean['rise_outcome'] == 'rises').sum())} of {len(clean)} without")
    widths = sorted(table["widths"].unique(), key=lambda w: [int(p) for p in str(w).split("-")])
    rates = sorted(table["noise_rate"].unique())
    if len(rates) > 1:
        diffs = [rise_difference(table, correct, w, rates[0], rates[-1]) for w in widths]
        parts = [f"width {str(w).split('-')[0]}: {interval_text(d['difference'], d['low'], d['high'])}"
                 for w, d in zip(widths, diffs)]
        out["noise_effect"] = (f"rise at {rates[-1]:.0%} noise minus rise at {rates[0]:.0%} (points, 95% "
                               f"interval): " + "; ".join(parts))
        above = [d["difference"] for d in diffs if d["low"] > 0]
        out["noise_effect_short"] = (f"at {len(above)} of {len(widths)} widths the rise at {rates[-1]:.0%} noise "
                                     f"exceeds the rise at {rates[0]:.0%} beyond its 95% interval"
                                     + (f", by {100 * min(above):.1f} to {100 * max(above):.1f} points" if above
                                        else ""))
    if len(rates) > 1 and "rise" in table:
        by_width = with_width(table).sort_values("noise_rate")
        out["rise_by_rate"] = "; ".join(
            f"width {w}: " + ", ".join(f"{100 * r:+.1f}" for r in part["rise"])
            for w, part in by_width.groupby("width")) + f" points at {', '.join(f'{r:.0%}' for r in rates)} noise"
    if len(noisy):
        worst = with_width(noisy).sort_values("final_test_acc").groupby("noise_rate").head(1)
        out["worst_width"] = ", ".join(f"{r.noise_rate:.0%}: width {r.width}" for r in worst.sort_values("noise_rate")
                                       .itertuples())
    fitted = noisy[noisy["final_noisy_acc"] >= 0.99]
    fit_widths = sorted(set(with_width(fitted)["width"]))
    out["memorised"] = (f"{len(fitted)} of {len(noisy)} runs with label noise fit 99% of their noisy labels "
                        f"by the end (widths {', '.join(map(str, fit_widths)) or 'none'})")
    outcomes = ("rises", "falls", "no detectable change")
    fitted_runs = noisy[noisy["post_fit_outcome"].isin(outcomes)]
    counts = fitted_runs["post_fit_outcome"].value_counts()
    out["post_fit"] = (f"of the {len(fitted_runs)} runs whose post-fit change is testable, test accuracy after the "
                       f"fit rises in {counts.get('rises', 0)}, falls in {counts.get('falls', 0)} and shows no "
                       f"detectable change in {counts.get('no detectable change', 0)}")
    if "claim_post_fit_rise" in noisy:
        judged = noisy["claim_post_fit_rise"].value_counts()
        out["post_fit"] += ("; against a rise of at least 1 point the verdict is " + ", ".join(
            f"{v} in {judged.get(v, 0)}" for v in ("holds", "ruled out", "inconclusive")))
    clean_final = with_width(clean).sort_values("width")
    out["clean_by_width"] = ", ".join(f"{r.width}: {1 - r.final_test_acc:.1%}" for r in clean_final.itertuples())
    if len(clean_final) > 1:

        narrow, wide = (correct[run_key(r.point, r.model, r.seed)] for r in
                        (clean_final.iloc[0], clean_final.iloc[-1]))
        gap = paired_change(1 - end_correctness(narrow), 1 - end_correctness(wide))
        out["clean_gap"] = (f"widest minus narrowest, end of training: "
                            f"{interval_text(gap.estimate, gap.low, gap.high)} points, paired over the test images")
    first = with_width(table)
    narrowest = first["width"].min()
    span = lambda part: f"epochs {int(part.min())} to {int(part.max())}"  # noqa: E731
    out["best_narrow"] = span(first.loc[first["width"] == narrowest, "best_test_epoch"])
    out["best_wider"] = span(first.loc[first["width"] > narrowest, "best_test_epoch"])
    unfitted = first[(first["noise_rate"] > 0) & (first["final_noisy_acc"] < 0.99)]
    out["unfitted"] = "; ".join(
        f"width {w}: {part['final_noisy_acc'].min():.0%} to {part['final_noisy_acc'].max():.0%}"
        for w, part in unfitted.groupby("width"))
    largest = table[table["widths"] == widths[-1]].sort_values("noise_rate")
    out["widest"] = ", ".join(f"{r.noise_rate:.0%}: {1 - r.best_test_acc:.1%} → {1 - r.final_test_acc:.1%}"
                              for r in largest.itertuples())
    return out


def end_correctness(correct: np.ndarray, end_fraction: float = END_FRACTION) -> np.ndarray:
    """Each test image's mean correctness over the last ``end_fraction`` of the epochs."""
    n_end = max(1, math.ceil(end_fraction * (correct.shape[0] - 1)))
    return correct[-n_end:].mean(axis=0)


def width_peak(table: pd.DataFrame, correct: dict[str, np.ndarray], noise_rate: float) -> dict[str, Any]:
    """Is the final test error at ``noise_rate`` highest at an intermediate width (a model-wise peak)?

    The width with the highest end-of-training error on half A of the test images (even indices)
    is compared on half B with the narrowest and the widest, paired over the same images (all
    runs score the same test subset). The peak *holds* when it is an intermediate width whose
    error exceeds both ends' beyond their intervals.
    """
    one_run_per_point(table)
    rows = with_width(table[np.isclose(table["noise_rate"], noise_rate)])
    if rows["widths"].nunique() < 3:
        return {"noise_rate": noise_rate, "peak_width": None, "peak_error": np.nan, "verdict": NOT_TESTABLE}
    rows = rows.sort_values("width")
    errors = {r.width: 1 - end_correctness(correct[run_key(r.point, r.model, r.seed)]) for r in rows.itertuples()}
    peak = max(errors, key=lambda w: errors[w][0::2].mean())
    narrow, wide = int(rows["width"].iloc[0]), int(rows["width"].iloc[-1])
    out: dict[str, Any] = {"noise_rate": noise_rate, "peak_width": peak,
                           "peak_error": float(errors[peak][1::2].mean())}
    for name, other in (("narrowest", narrow), ("widest", wide)):
        ci = paired_change(errors[other][1::2], errors[peak][1::2])
        out.update({f"over_{name}": ci.estimate, f"over_{name}_low": ci.low, f"over_{name}_high": ci.high})
    inside = narrow < peak < wide
    out["verdict"] = HOLDS if inside and out["over_narrowest_low"] > 0 and out["over_widest_low"] > 0 else INCONCLUSIVE
    return out


def width_peaks(table: pd.DataFrame, correct: dict[str, np.ndarray]) -> pd.DataFrame:
    """``width_peak`` at every noise rate of the sweep."""
    return pd.DataFrame([width_peak(table, correct, r) for r in sorted(table["noise_rate"].unique())])
