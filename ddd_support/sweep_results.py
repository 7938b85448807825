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
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import RunDirError
from .recording import METRIC_COLUMNS, atomic_write_json, atomic_write_text, now_iso, provenance, read_json
from .sweep import SweepPoint, SweepSpec, expand, run_root, sweep_dir

SWEEP_TABLE, EPOCH_TABLE, RECORD = "sweep.csv", "sweep_epochs.csv", "sweep.json"
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
    from .analysis.stats import outcome, paired_change

    correct = np.asarray(correct, dtype=float)
    if correct.ndim != 2 or correct.shape[0] < 3 or correct.shape[1] < 4:
        raise ValueError(f"need (epochs + 1, n_test) correctness with >= 3 epochs and >= 4 images, got {correct.shape}")
    half_a, half_b = correct[:, 0::2], correct[:, 1::2]
    n_end = max(1, math.ceil(end_fraction * (correct.shape[0] - 1)))
    end = slice(correct.shape[0] - n_end, None)
    best = int(np.argmax(half_a[1:].mean(axis=1))) + 1     # epoch 0 (initialisation) is not a candidate
    ci = paired_change(half_b[end].mean(axis=0), half_b[best])
    return {"best_epoch_half_a": best, "rise": ci.estimate, "rise_low": ci.low, "rise_high": ci.high,
            "rise_outcome": outcome(ci, "rises", "falls")}


def run_row(run_point: SweepPoint, run_dir: Path) -> dict[str, Any]:
    """One row of ``sweep.csv``: the varied values, final metrics, rise, phases and claims."""
    from .analysis.claims import CLAIMS, claims_from
    from .analysis.stats import NOT_TESTABLE
    from .analysis.rundata import load_run
    from .analysis.summary import summarise_run

    run = load_run(run_dir)
    if run.status != "complete":
        raise RunDirError(f"{run_dir} is not complete (status {run.status}); rerun the sweep to finish it")
    m = run.metrics
    last = m.iloc[-1]
    best = int(m["test_acc"].idxmax())
    cfg = run_point.config
    row: dict[str, Any] = {
        **run_point.values, "point": run_point.point, "model": cfg.model, "seed": cfg.seed,
        "n_train": int(len(run.labels["original"])), "n_test": int(len(run.labels["test_indices"])),
        "epochs": int(last["epoch"]), "widths": "-".join(map(str, cfg.widths)), "noise_rate": cfg.noise_rate,
        "lr": cfg.lr, "final_test_acc": float(last["test_acc"]),
        "final_train_acc": _train_acc(last, cfg.noise_rate), "final_noisy_acc": float(last["noisy_acc"]),
        "best_test_acc": float(m.loc[best, "test_acc"]), "best_test_epoch": int(m.loc[best, "epoch"]),
    }
    correct = run.test_correct
    if correct is None:
        raise RunDirError(f"{run_dir} has no per-image test record ({run_dir}/test_correct.npz); "
                          "sweeps need runs recorded by this version")
    row.update(overfitting_rise(correct))
    if cfg.noise_rate == 0:   # no noisy samples: phases only, the claims about them are not testable
        from .analysis.phases import detect_phases
        from .analysis.regeneralisation import post_fit_change

        phases, post_fit, claims = detect_phases(m, n_test=row["n_test"]).as_dict(), post_fit_change(run), None
    else:
        summary = summarise_run(run)
        phases, post_fit, claims = summary.phases, summary.post_fit, claims_from(summary)
    row.update(test_peak_epoch=phases["test_peak_epoch"], test_dip_epoch=phases["test_dip_epoch"],
               noisy_fit_end_epoch=phases["noisy_fit_end_epoch"], post_fit_change=post_fit["change"],
               post_fit_outcome=post_fit["outcome"], run_dir=str(run_dir))
    for claim in CLAIMS:
        row[f"claim_{claim}"] = (NOT_TESTABLE if claims is None
                                 else claims.loc[claims["claim"] == claim, "verdict"].iloc[0])
    return row


def _train_acc(last: pd.Series, noise_rate: float) -> float:
    """Accuracy on the training labels as given (clean and noisy samples weighted by their share)."""
    noisy = float(last["noisy_acc"]) if noise_rate > 0 and not math.isnan(last["noisy_acc"]) else 0.0
    return (1 - noise_rate) * float(last["clean_acc"]) + noise_rate * noisy


def sweep_tables(spec: SweepSpec, out: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``sweep.csv`` and ``sweep_epochs.csv`` of every complete run of ``spec`` under ``out``."""
    from .analysis.rundata import load_run
    from .recording import run_directory

    rows, curves = [], []
    for r in expand(spec):
        run_dir = run_directory(run_root(out, spec, r.point), r.config.profile, r.config.model, r.config.seed)
        if not (run_dir / "config.json").exists():
            continue
        if read_json(run_dir / "config.json").get("status") != "complete":
            continue
        rows.append(run_row(r, run_dir))
        metrics = load_run(run_dir).metrics
        curves.append(metrics.assign(point=r.point, model=r.config.model, seed=r.config.seed, **r.values))
    table = pd.DataFrame(rows)
    if len(table):
        table["run_dir"] = [str(Path(p).relative_to(sweep_dir(out, spec))) for p in table["run_dir"]]
    keys = ["point", "model", "seed", *spec.varied_keys]
    epochs = (pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(columns=[*keys, *METRIC_COLUMNS]))
    epochs = epochs[[*dict.fromkeys([*keys, *METRIC_COLUMNS])]]
    return table, epochs


def write_sweep_record(spec: SweepSpec, out: str | Path, extra: dict[str, Any]) -> Path:
    """Write ``sweep.csv``, ``sweep_epochs.csv`` and ``sweep.json`` (spec, provenance, ``extra``)."""
    import yaml

    folder = sweep_dir(out, spec)
    folder.mkdir(parents=True, exist_ok=True)
    table, epochs = sweep_tables(spec, out)
    atomic_write_text(folder / SWEEP_TABLE, table.to_csv(index=False, float_format="%.10g"))
    atomic_write_text(folder / EPOCH_TABLE, epochs.to_csv(index=False, float_format="%.10g"))
    atomic_write_text(folder / "spec.yaml", yaml.safe_dump(spec.to_dict(), sort_keys=False))
    atomic_write_json(folder / RECORD, {"spec": spec.to_dict(), "runs_planned": len(expand(spec)),
                                        "runs_complete": len(table), "written": now_iso(),
                                        "provenance": provenance("n/a"), **extra})
    return folder


def read_sweep(folder: str | Path) -> tuple[SweepSpec, pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """A sweep's spec, run table, curves and record, validated; a RunDirError says what is wrong."""
    folder = Path(folder)
    for name in (RECORD, SWEEP_TABLE, EPOCH_TABLE):
        if not (folder / name).exists():
            raise RunDirError(f"{folder} lacks {name}: it is not a finished sweep; run "
                              f"`python -m ddd_support sweep SPEC.yaml` to make one")
    record = read_json(folder / RECORD)
    spec = SweepSpec.from_dict(record.get("spec", {}), source=f"{folder / RECORD}")
    table, epochs = pd.read_csv(folder / SWEEP_TABLE), pd.read_csv(folder / EPOCH_TABLE)
    missing = [c for c in (*RUN_COLUMNS, *spec.varied_keys) if c not in table.columns]
    if missing:
        raise RunDirError(f"{folder / SWEEP_TABLE} lacks columns {missing}; rewrite it with this version")
    if len(table) != record.get("runs_complete"):
        raise RunDirError(f"{folder / SWEEP_TABLE} has {len(table)} runs, its record says "
                          f"{record.get('runs_complete')}: the files do not belong together")
    for key, curve in epochs.groupby(["point", "model", "seed"]):
        steps = np.diff(curve["epoch"].to_numpy())
        if curve["epoch"].iloc[0] != 0 or not (steps == 1).all():
            raise RunDirError(f"{folder / EPOCH_TABLE}: the epochs of {key} are not 0, 1, 2, ...")
        if curve["test_acc"].isna().any():
            raise RunDirError(f"{folder / EPOCH_TABLE}: test accuracy of {key} has missing values")
    return spec, table, epochs, record


def export_sweep(folder: str | Path, dest: str | Path) -> Path:
    """Copy a finished sweep's tables and record (no run directories) to ``dest/NAME``."""
    spec, _, _, _ = read_sweep(folder)
    target = Path(dest) / spec.name
    target.mkdir(parents=True, exist_ok=True)
    for name in (RECORD, SWEEP_TABLE, EPOCH_TABLE, "spec.yaml"):
        shutil.copyfile(Path(folder) / name, target / f".{name}.tmp")
        (target / f".{name}.tmp").replace(target / name)
    return target
