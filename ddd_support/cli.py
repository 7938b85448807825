"""Command line: ``python -m ddd_support {train,sweep,profiles,analyze,export-reference} ...``.

Results (run directories, reports, tables) go to stdout; status, warnings and errors go to
stderr through ``logging`` (``-q``: warnings and errors only, ``-v``: more detail, ``-vv``:
debug). Exit status: 0 success, 2 usage (bad arguments, unknown profile, model or config
key), 1 failure (missing data, a run directory or checkpoint that cannot be used, a diverged
run, an I/O error), 130 interrupted with Ctrl-C (a training run resumes from its last
checkpoint when the same command runs again).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from ddd_support import __version__
from ddd_support.config import MODELS, PROFILES, TrainConfig, get_profile, parse_overrides
from ddd_support.errors import ConfigError, DDDError

# Each command imports the modules it runs (torch, pandas, scipy, matplotlib, the run reader) when
# it runs, not here: `--version`, `--help`, `profiles` and a usage error answer in a fraction of a
# second instead of the few seconds those imports take.

log = logging.getLogger("ddd_support")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
_handler: logging.Handler | None = None


class _Formatter(logging.Formatter):
    """Plain messages for status; ``warning:``/``error:`` in front of the others."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text if record.levelno < logging.WARNING else f"{record.levelname.lower()}: {text}"


def configure_logging(verbosity: int) -> None:
    """Log ``ddd_support`` and Python warnings to stderr: -1 warnings only, 0 status, 1 detail, 2 debug."""
    global _handler
    level = {-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG)
    logging.captureWarnings(False)  # re-installs the hook if something replaced it since
    logging.captureWarnings(True)
    for name in ("ddd_support", "py.warnings"):
        logger = logging.getLogger(name)
        if _handler is not None:
            logger.removeHandler(_handler)
    _handler = logging.StreamHandler(sys.stderr)
    _handler.setFormatter(_Formatter("%(message)s"))
    for name in ("ddd_support", "py.warnings"):
        logger = logging.getLogger(name)
        logger.addHandler(_handler)
        logger.setLevel(level)
        logger.propagate = False


def _verbosity_options() -> argparse.ArgumentParser:
    """``-q``/``-v``, accepted before or after the subcommand."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                       help="only warnings and errors on stderr (train: no progress bars either)")
    group.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                       help="more detail on stderr; -vv for debugging output")
    return parent


def build_parser() -> argparse.ArgumentParser:
    verbosity = _verbosity_options()
    parser = argparse.ArgumentParser(prog="python -m ddd_support", parents=[verbosity],
                                     description="Epoch-wise double descent: train and analyse MLPs on noisy CIFAR-10.",
                                     epilog="Exit status: 0 success, 1 failure, 2 usage error, 130 interrupted.")
    parser.add_argument("--version", action="version", version=f"ddd_support {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    tr = sub.add_parser("train", parents=[verbosity],
                        help="train the models of a profile (resumes existing runs)")
    tr.add_argument("--profile", default="smoke", help=f"one of {', '.join(PROFILES)} (default smoke)")
    tr.add_argument("--model", action="append", choices=MODELS,
                    help="model to train; repeat for several (default: the profile's models)")
    tr.add_argument("--seed", type=int, action="append", help="seed; repeat for several (default 0)")
    tr.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE", default=[],
                    help="override one config value, e.g. --set epochs=50 --set lr=3e-4")
    tr.add_argument("--out", default="runs", help="root folder of run directories (default runs)")
    tr.add_argument("--batched-seeds", action="store_true",
                    help="train each model's seeds together as one batched computation (same results)")
    tr.add_argument("--vary", action="append", metavar="KEY=V1,V2", default=[],
                    help="also train these values side by side, each under OUT/KEYVALUE, e.g. --vary "
                         "noise_rate=0.0,0.1 (several --vary: every combination; implies --batched-seeds)")

    sw = sub.add_parser("sweep", parents=[verbosity],
                        help="train a grid of runs on Dask (a spec file or --grid axes) and tabulate them",
                        description="Train every point of a sweep on a Dask cluster (an embedded LocalCluster "
                                    "unless --scheduler is given), resuming and skipping finished runs, then "
                                    "write OUT/NAME/sweep.csv (one row per run) and sweep_epochs.csv.")
    sw.add_argument("spec", nargs="?", metavar="SPEC.yaml", help="sweep spec: name, profile, set, grid, points")
    sw.add_argument("--name", help="the sweep's name (required without a spec file)")
    sw.add_argument("--profile", help="profile of a sweep given by --grid (default smoke; a spec names its own)")
    sw.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                    help="an axis, e.g. --grid noise_rate=0.1,0.2 --grid seed=0,1 (with a spec: a new axis, or "
                         "the values of the spec's axis of that key)")
    sw.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE", default=[],
                    help="a value for every point (with a spec: added to, or replacing, its set)")
    sw.add_argument("--out", default="runs/sweeps", help="root folder of sweeps (default runs/sweeps)")
    sw.add_argument("--workers", type=int, help="worker processes of the embedded cluster (default: one per "
                                                "core, or one per GPU)")
    sw.add_argument("--scheduler", metavar="ADDRESS", help="use a running Dask scheduler, e.g. tcp://host:8786")
    sw.add_argument("--runs-per-gpu", type=int, default=2, help="runs that share one GPU (default 2)")
    sw.add_argument("--batched-seeds", action="store_true",
                    help="train the seeds of each point and model together in one task (same results)")
    sw.add_argument("--export", metavar="DEST", help="then copy the sweep's tables to DEST/NAME")
    sw.add_argument("--dry-run", action="store_true", help="list the runs and their directories, train nothing")

    sub.add_parser("profiles", parents=[verbosity], help="list the profiles and their values")

    an = sub.add_parser("analyze", parents=[verbosity],
                        help="print phases, separation and large-activation summaries of runs")
    an.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directory, e.g. runs/smoke/mlp7/seed0")
    an.add_argument("--no-figures", action="store_true", help="do not write PNGs into RUN_DIR/figures/")
    ex = sub.add_parser("export-reference", parents=[verbosity],
                        help="write compact copies of finished runs (no checkpoints), "
                             "their ablation, an index and summary tables")
    ex.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    ex.add_argument("--dest", required=True, help="root folder of the compact copies")
    ex.add_argument("--max-snapshots", type=int, default=12, help="snapshots kept per run (default 12)")
    ex.add_argument("--top-k", type=int, default=2, help="top neurons kept per layer (default 2)")
    ex.add_argument("--no-ablation", action="store_true",
                    help="do not compute the ablation (it needs the checkpoint and the data set)")
    ex.add_argument("--replace", action="store_true",
                    help="replace whole a destination run of another configuration, or a trained run, instead of "
                         "refusing to export over it")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; returns the exit status (argparse exits with 2 on bad arguments)."""
    args = build_parser().parse_args(argv)
    args.quiet = getattr(args, "quiet", False)
    verbosity = -1 if args.quiet else getattr(args, "verbose", 0)
    configure_logging(verbosity)
    commands = {"profiles": lambda a: _profiles(), "train": _train, "sweep": _sweep, "analyze": _analyze,
                "export-reference": _export}
    t0 = time.perf_counter()
    try:
        code = commands[args.command](args)
    except BrokenPipeError:  # the reader of stdout went away (`profiles | head`): nothing left to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except ConfigError as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    except (DDDError, OSError) as exc:
        log.error("%s", exc, exc_info=verbosity > 1)
        return EXIT_FAILURE
    except (MemoryError, RuntimeError) as exc:
        if not _out_of_memory(exc):
            raise
        log.error("out of memory (%s): lower base_width, hidden_widths, batch_size or eval_batch_size, or use a "
                  "machine with more memory", str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                  exc_info=verbosity > 1)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        resume = ("; the same command resumes from the last checkpoint" if args.command in ("train", "sweep")
                  else "")
        log.error("interrupted%s", resume)
        return EXIT_INTERRUPTED
    log.debug("%s finished in %.1f s", args.command, time.perf_counter() - t0)
    return code


def _out_of_memory(exc: BaseException) -> bool:
    """True for a failed allocation: MemoryError, or torch's CPU or GPU out-of-memory RuntimeError."""
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or "out of memory" in text or "can't allocate memory" in text


def _train(args: argparse.Namespace) -> int:
    overrides = parse_overrides(args.overrides)
    profile = get_profile(args.profile)  # a usage error answers before the training modules load
    from ddd_support.train.runner import parse_vary, train_profile

    vary = parse_vary(args.vary)
    if args.quiet:
        overrides["progress"] = False
    elif not sys.stderr.isatty():  # a log file or a pipe: no progress bars unless --set progress=true
        overrides.setdefault("progress", False)
    seeds = args.seed or [0]
    models = args.model or profile.models
    log.info("train: profile %s, model(s) %s, seed(s) %s, into %s", args.profile, ", ".join(models),
             ", ".join(map(str, seeds)), args.out)
    run_dirs = train_profile(args.profile, args.model, seeds, overrides, args.out,
                             batched_seeds=args.batched_seeds, vary=vary)
    for run_dir in run_dirs:
        print(run_dir, flush=True)
    log.info("train: %d run(s) complete", len(run_dirs))
    return EXIT_OK


def _sweep(args: argparse.Namespace) -> int:
    from ddd_support.book.locations import SWEEPS_DIR, is_reference_root
    from ddd_support.book.reference import update_sweep_index
    from ddd_support.runs.schema import run_directory
    from ddd_support.sweeps.execute import run_sweep_command
    from ddd_support.sweeps.results import export_sweep
    from ddd_support.sweeps.spec import expand, load_spec, run_root, spec_from_arguments, sweep_spec_with

    if args.spec:
        given = [flag for flag, value in (("--name", args.name), ("--profile", args.profile)) if value]
        if given:
            raise ConfigError(f"{' and '.join(given)} cannot be used with a spec file, which names its sweep and "
                              "profile; edit the spec or copy it under another name")
        spec = sweep_spec_with(load_spec(args.spec), args.grid, args.overrides)
    elif args.name:
        spec = spec_from_arguments(args.name, args.profile or "smoke", args.grid, args.overrides)
    else:
        raise ConfigError("give a sweep spec file, or --name and --grid axes")
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {args.workers}")
    if args.runs_per_gpu < 1:
        raise ConfigError(f"--runs-per-gpu must be at least 1, got {args.runs_per_gpu}")

    runs = expand(spec)
    if args.dry_run:
        for r in runs:
            print(run_directory(run_root(args.out, spec, r.point), r.config.profile, r.config.model, r.config.seed))
        log.info("sweep %s: %d run(s), nothing trained (--dry-run)", spec.name, len(runs))
        return EXIT_OK

    folder, failures = run_sweep_command(spec, args.out, args.scheduler, args.workers, args.runs_per_gpu,
                                         args.batched_seeds, progress=not args.quiet, log=log)
    print(folder, flush=True)
    if args.export and not failures:
        print(export_sweep(folder, args.export), flush=True)
        root = Path(args.export).parent
        if Path(args.export).name == SWEEPS_DIR and is_reference_root(root):
            print(update_sweep_index(root), flush=True)
    if failures:
        for label, why in failures.items():
            log.error("%s: %s", label, why)
        log.error("sweep %s: %d run(s) failed; fix the cause and run the same command again (finished runs "
                  "are kept)", spec.name, len(failures))
        return EXIT_FAILURE
    return EXIT_OK


def _export(args: argparse.Namespace) -> int:
    from ddd_support.book.reference import (check_export_options, export_reference, export_target,
                                            write_reference_index)
    from ddd_support.data.cifar import load_cifar10
    from ddd_support.files import read_json
    from ddd_support.runs.reader import load_run
    from ddd_support.runs.schema import CHECKPOINT_INDEX, CONFIG_FILE

    check_export_options(args.max_snapshots, args.top_k)
    run_dirs = list(dict.fromkeys(Path(r) for r in args.run_dirs))
    targets: dict[Path, Path] = {}
    for run_dir in run_dirs:  # every run checked, and every destination known, before anything is written
        load_run(run_dir)
        target = export_target(run_dir, args.dest)
        if target in targets:
            raise DDDError(f"{targets[target]} and {run_dir} would both be exported to {target} (same profile, model "
                           "and seed): export them to different --dest folders")
        targets[target] = run_dir
    arrays = None
    for run_dir in run_dirs:
        if arrays is None and not args.no_ablation and (run_dir / CHECKPOINT_INDEX).exists():
            cfg = TrainConfig.from_dict(read_json(run_dir / CONFIG_FILE)["config"])
            log.info("export-reference: loading CIFAR-10 for the ablation")
            arrays = load_cifar10(cfg.data_root, cfg.data_source, progress=False)
        log.info("export-reference: %s", run_dir)
        print(export_reference(run_dir, args.dest, args.max_snapshots, args.top_k, arrays,
                               ablation=not args.no_ablation, replace=args.replace), flush=True)
    print(write_reference_index(args.dest), flush=True)
    return EXIT_OK


def _analyze(args: argparse.Namespace) -> int:
    from ddd_support.book.report import analyze

    for run_dir in args.run_dirs:
        log.info("analyze: %s", run_dir)
        print(analyze(run_dir, write_figures=not args.no_figures), flush=True)
    return EXIT_OK


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
    return EXIT_OK
