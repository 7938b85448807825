"""Search for a CPU-scale configuration that shows the phases of epoch-wise double descent.

Each candidate trains MLP7 (the model expected to re-generalise) with the project's own
trainer; the outcome of every finished or partial run is summarised with ``detect_phases``.

    python experiments/cpu_search.py run NAME [NAME ...] [--out search] [--threads 1]
    python experiments/cpu_search.py summary [--out search] [--csv book/data/cpu_search.csv]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from ddd_support.analysis.phases import detect_phases
from ddd_support.config import TrainConfig
from ddd_support.recording import atomic_write_json, atomic_write_text, now_iso, provenance
from ddd_support.training import train

COMMON = dict(model="mlp7", noise_rate=0.3, snapshot_dense_until=10, snapshot_per_decade=10,
              probe_per_class=20)
#: name -> the values that differ from COMMON (widths of MLP7 are 4 x base_width).
CANDIDATES: dict[str, dict] = {
    "n4k-w512-lr1e-4": dict(n_train=4000, n_test=2000, base_width=128, lr=1e-4, batch_size=128, epochs=200),
    "n5k-w1024-lr1e-4": dict(n_train=5000, n_test=2000, base_width=256, lr=1e-4, batch_size=128, epochs=150),
    "n5k-w512-lr1e-3": dict(n_train=5000, n_test=2000, base_width=128, lr=1e-3, batch_size=128, epochs=150),
    "n5k-w512-lr3e-4": dict(n_train=5000, n_test=2000, base_width=128, lr=3e-4, batch_size=128, epochs=150),
    "n10k-w512-lr1e-4": dict(n_train=10000, n_test=2000, base_width=128, lr=1e-4, batch_size=128, epochs=120),
    "n10k-w512-lr1e-3": dict(n_train=10000, n_test=2000, base_width=128, lr=1e-3, batch_size=128, epochs=120),
    "n20k-w512-lr1e-4": dict(n_train=20000, n_test=2000, base_width=128, lr=1e-4, batch_size=256, epochs=80),
    "n5k-w512-lr1e-4-b32": dict(n_train=5000, n_test=2000, base_width=128, lr=1e-4, batch_size=32, epochs=100),
    "n5k-w256-lr1e-3": dict(n_train=5000, n_test=2000, base_width=64, lr=1e-3, batch_size=128, epochs=200),
}


def candidate_config(name: str, threads: int | None) -> TrainConfig:
    if name not in CANDIDATES:
        raise SystemExit(f"unknown candidate {name!r}; known: {', '.join(CANDIDATES)}")
    return TrainConfig(profile=f"search-{name}", threads=threads, progress=False,
                       **COMMON, **CANDIDATES[name])


def summarize(out: Path) -> pd.DataFrame:
    rows = []
    for config_file in sorted(out.glob("search-*/mlp7/seed0/config.json")):
        state = json.loads(config_file.read_text())
        cfg = state["config"]
        m = pd.read_csv(config_file.parent / "metrics.csv")
        p = detect_phases(m, n_test=cfg["n_test"])
        rows.append({
            "candidate": cfg["profile"].removeprefix("search-"), "n_train": cfg["n_train"],
            "width": 4 * cfg["base_width"], "lr": cfg["lr"], "batch_size": cfg["batch_size"],
            "epochs_run": int(m["epoch"].max()), "epochs_planned": cfg["epochs"],
            "seconds_per_epoch": round(float(m["train_seconds"].iloc[1:].median() + m["eval_seconds"].iloc[1:].median()), 2),
            "clean_fit_epoch": p.clean_fit_epoch, "noisy_fit_end_epoch": p.noisy_fit_end_epoch,
            "test_peak_epoch": p.test_peak_epoch, "test_peak_acc": p.test_peak_acc,
            "test_dip_epoch": p.test_dip_epoch, "test_dip_acc": p.test_dip_acc,
            "regeneralizes": p.recovers_from_dip, "regen_epoch": p.recovery_epoch, "regen_acc": p.recovery_acc,
            "final_test_acc": p.final_test_acc, "final_noisy_acc": float(m["noisy_acc"].iloc[-1]),
            "test_acc_at_noisy_fit": _at(m, p.noisy_fit_end_epoch, "test_acc"),
            "test_acc_change_after_fit": (None if p.noisy_fit_end_epoch is None
                                          else p.final_test_acc - _at(m, p.noisy_fit_end_epoch, "test_acc")),
            "test_acc_gain_dip_to_fit": (None if p.noisy_fit_end_epoch is None or p.test_dip_acc is None
                                         else _at(m, p.noisy_fit_end_epoch, "test_acc") - p.test_dip_acc),
            "noisy_true_acc_at_end": float(m["noisy_true_acc"].iloc[-1]),
        })
    return pd.DataFrame(rows)


def _at(metrics: pd.DataFrame, epoch: int | None, column: str) -> float | None:
    return None if epoch is None else float(metrics.loc[metrics["epoch"] == epoch, column].iloc[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["run", "summary", "list"])
    parser.add_argument("names", nargs="*")
    parser.add_argument("--out", default="search")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--csv", default=None)
    args = parser.parse_args()
    if args.command == "list":
        for name, values in CANDIDATES.items():
            print(name, values)
    elif args.command == "run":
        for name in args.names:
            print(train(candidate_config(name, args.threads), args.out), flush=True)
    else:
        table = summarize(Path(args.out))
        print(table.to_string(index=False))
        if args.csv:
            atomic_write_text(args.csv, table.to_csv(index=False))
            atomic_write_json(Path(args.csv).with_suffix(".json"), {
                "what": "outcome of each candidate of experiments/cpu_search.py (MLP7, seed 0, 30% noise)",
                "command": "python experiments/cpu_search.py run NAME --threads 1; "
                           f"python experiments/cpu_search.py summary --csv {args.csv}",
                "phases": "ddd_support.analysis.phases.detect_phases with n_test; defaults otherwise",
                "candidates": {c: {**COMMON, **CANDIDATES[c]} for c in table["candidate"]},
                "written": now_iso(), "provenance": provenance("cpu"),
            })


if __name__ == "__main__":
    main()
