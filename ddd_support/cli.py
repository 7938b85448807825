"""Command line: ``python -m ddd_support {train,profiles,analyze,export-reference} ...``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .config import MODELS, PROFILES, TrainConfig, parse_overrides
from .data import load_cifar10
from .errors import DDDError
from .recording import CHECKPOINT_INDEX, read_json


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ddd_support",
                                     description="Epoch-wise double descent: train and analyse MLPs on noisy CIFAR-10.")
    sub = parser.add_subparsers(dest="command", required=True)

    tr = sub.add_parser("train", help="train the models of a profile (resumes existing runs)")
    tr.add_argument("--profile", default="smoke", help=f"one of {', '.join(PROFILES)} (default smoke)")
    tr.add_argument("--model", action="append", choices=MODELS,
                    help="model to train; repeat for several (default: the profile's models)")
    tr.add_argument("--seed", type=int, action="append", help="seed; repeat for several (default 0)")
    tr.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE", default=[],
                    help="override one config value, e.g. --set epochs=50 --set lr=3e-4")
    tr.add_argument("--out", default="runs", help="root folder of run directories (default runs)")
    tr.add_argument("--quiet", action="store_true", help="no progress bars")
    tr.add_argument("--batched-seeds", action="store_true",
                    help="train each model's seeds together as one batched computation (same results)")

    sub.add_parser("profiles", help="list the profiles and their values")

    an = sub.add_parser("analyze", help="print phases, separation and large-activation summaries of runs")
    an.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directory, e.g. runs/smoke/mlp7/seed0")
    an.add_argument("--no-figures", action="store_true", help="do not write PNGs into RUN_DIR/figures/")
    ex = sub.add_parser("export-reference", help="write compact copies of finished runs (no checkpoints), "
                                                        "their ablation, an index and summary tables")
    ex.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    ex.add_argument("--dest", required=True, help="root folder of the compact copies")
    ex.add_argument("--max-snapshots", type=int, default=12, help="snapshots kept per run (default 12)")
    ex.add_argument("--top-k", type=int, default=2, help="top neurons kept per layer (default 2)")
    ex.add_argument("--no-ablation", action="store_true",
                    help="do not compute the ablation (it needs the checkpoint and the data set)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "profiles":
            return _profiles()
        if args.command == "train":
            return _train(args)
        if args.command == "analyze":
            return _analyze(args)
        if args.command == "export-reference":
            return _export(args)
    except DDDError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 1


def _train(args: argparse.Namespace) -> int:
    from .runner import train_profile

    overrides = parse_overrides(args.overrides)
    if args.quiet:
        overrides["progress"] = False
    run_dirs = train_profile(args.profile, args.model, args.seed or [0], overrides, args.out,
                             batched_seeds=args.batched_seeds)
    for run_dir in run_dirs:
        print(run_dir)
    return 0


def _export(args: argparse.Namespace) -> int:
    from .reference import export_reference, write_reference_index

    arrays = None
    for run_dir in args.run_dirs:
        if arrays is None and not args.no_ablation and (Path(run_dir) / CHECKPOINT_INDEX).exists():
            cfg = TrainConfig.from_dict(read_json(Path(run_dir) / "config.json")["config"])
            arrays = load_cifar10(cfg.data_root, cfg.data_source, progress=False)
        print(export_reference(run_dir, args.dest, args.max_snapshots, args.top_k, arrays,
                               ablation=not args.no_ablation), flush=True)
    print(write_reference_index(args.dest), flush=True)
    return 0


def _analyze(args: argparse.Namespace) -> int:
    from .analysis.report import analyze

    for run_dir in args.run_dirs:
        print(analyze(run_dir, write_figures=not args.no_figures), flush=True)
    return 0


def _profiles() -> int:
    defaults = TrainConfig().to_dict()
    for prof in PROFILES.values():
        print(f"{prof.name}: {prof.description}")
        print(f"  models: {', '.join(prof.models)}")
        values = {**defaults, **prof.values}
        for key in sorted(values):
            if key in ("profile", "model"):
                continue
            mark = "" if key in prof.values else "  (default)"
            print(f"  {key} = {json.dumps(values[key])}{mark}")
        print()
    return 0
