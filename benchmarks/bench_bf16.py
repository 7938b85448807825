"""bf16 against fp32 on the training step, side by side in one run, and the bf16 GEMM floor.

Run from the repository root, for example::

    python benchmarks/bench_bf16.py                       # the cpu_mlp7 profile's step, one thread
    python benchmarks/bench_bf16.py --profile cpu --model mlp7 --batch-size 256
    python benchmarks/bench_bf16.py --tiny                # seconds, synthetic data (the test)

Both precisions train the same model (same initialisation) on the same images in the same
order; their repetitions alternate (fp32, bf16, fp32, ...), so a busy machine slows both alike,
and medians are reported. Printed:

* ``step``: seconds per training step (the engine's epoch over ``--n-train`` images / steps);
* ``ratio``: fp32 step / bf16 step (above 1: bf16 is faster), and the same ratio of each
  repetition pair, median (``paired``);
* ``gemm floor``: the GEMMs of one step at the model's shapes timed alone with ``torch.mm``
  (``bench_trainer.time_ceiling``) in each dtype; ``of floor`` = floor / step, the share of the
  step that the matrix products alone would take (1 = nothing but GEMMs).

Speed only: whether bf16 runs give the same curves and verdicts as fp32 runs is a separate
question (paired runs of the same seeds), and no reference run uses bf16.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # the package, installed or not

from bench_trainer import gemm_shapes, synthetic_arrays, time_ceiling  # noqa: E402

from ddd_support.config import PROFILES, TrainConfig  # noqa: E402
from ddd_support.data import cifar as data_mod  # noqa: E402
from ddd_support.errors import DataError  # noqa: E402
from ddd_support.models import model_from_config  # noqa: E402
from ddd_support.train.driver import apply_runtime_settings, batch_order  # noqa: E402
from ddd_support.train.engine import Engine  # noqa: E402
from ddd_support.train.prepare import prepare_data  # noqa: E402

PRECISIONS = ("fp32", "bf16")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--profile", default="cpu_mlp7", choices=list(PROFILES))
    p.add_argument("--model", default="mlp7")
    p.add_argument("--base-width", type=int, help="default: the profile's")
    p.add_argument("--batch-size", type=int, help="default: the profile's")
    p.add_argument("--n-train", type=int, default=1024, help="images per timed pass (default 1024)")
    p.add_argument("--repeats", type=int, default=5, help="timed passes per precision (default 5)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--synthetic", action="store_true", help="synthetic images instead of CIFAR-10")
    p.add_argument("--tiny", action="store_true", help="a seconds-long check: small model, synthetic data")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    if args.tiny:
        args.synthetic, args.base_width, args.n_train, args.repeats = True, 16, 256, 2
    return args


def make_configs(args: argparse.Namespace) -> dict[str, TrainConfig]:
    """The fp32 and bf16 configurations of the same run (CPU, ``args.threads`` threads)."""
    overrides = {"n_train": args.n_train, "n_test": 100, "device": "cpu", "threads": args.threads,
                 "progress": False}
    for key in ("base_width", "batch_size"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    profile = PROFILES[args.profile]
    return {p: profile.config(args.model, 0, {**overrides, "precision": p}) for p in PRECISIONS}


def load_arrays(args: argparse.Namespace) -> data_mod.CifarArrays:
    if not args.synthetic:
        try:
            return data_mod.load_cifar10(progress=False)
        except DataError as exc:
            print(f"CIFAR-10 not available ({str(exc)[:80]}...); using synthetic data", file=sys.stderr)
    return synthetic_arrays(args.n_train, 100)


def run(args: argparse.Namespace) -> dict:
    """Time both precisions alternately; returns the setup, medians, ratios and GEMM floors."""
    cfgs = make_configs(args)
    fp32 = cfgs["fp32"]
    apply_runtime_settings(fp32)
    d = prepare_data(fp32, load_arrays(args), torch.device("cpu"))
    steps = -(-len(d.x_train) // fp32.batch_size)
    engines = {}
    for p, cfg in cfgs.items():
        torch.manual_seed(0)
        engines[p] = Engine([model_from_config(cfg)], [cfg], torch.device("cpu"))
        engines[p].train_epoch(d.x_train, d.y_noisy[None], torch.arange(cfg.batch_size)[None],
                               cfg.batch_size)   # warm-up step, not timed
    times: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    for rep in range(args.repeats):
        order = batch_order(len(d.x_train), 0, rep + 1)
        for p in PRECISIONS:
            t0 = time.perf_counter()
            engines[p].train_epoch(d.x_train, d.y_noisy[None], order[None], cfgs[p].batch_size)
            times[p].append((time.perf_counter() - t0) / steps)
    shapes = gemm_shapes(fp32.widths, fp32.batch_size)
    floor = {p: time_ceiling(shapes, torch.device("cpu"), torch.bfloat16 if p == "bf16" else torch.float32)
             for p in PRECISIONS}
    step = {p: statistics.median(t) for p, t in times.items()}
    return {
        "setup": {"profile": args.profile, "model": fp32.model, "widths": list(fp32.widths),
                  "batch_size": fp32.batch_size, "n_train": len(d.x_train), "steps_per_pass": steps,
                  "repeats": args.repeats, "threads": args.threads, "torch": torch.__version__,
                  "data": "synthetic" if args.synthetic else "cifar10"},
        "step_seconds": step,
        "gemm_floor_seconds": floor,
        "ratio_fp32_over_bf16": step["fp32"] / step["bf16"],
        "ratio_paired": statistics.median(a / b for a, b in zip(times["fp32"], times["bf16"])),
        "gemm_ratio_fp32_over_bf16": floor["fp32"] / floor["bf16"],
        "of_floor": {p: floor[p] / step[p] for p in PRECISIONS},
    }


def format_table(r: dict) -> str:
    """The results as the few lines the benchmark prints."""
    s = r["setup"]
    lines = [f"{s['model']} widths {'-'.join(map(str, s['widths']))}, batch {s['batch_size']}, "
             f"{s['steps_per_pass']} steps x {s['repeats']} repeats, {s['threads']} thread(s), {s['data']}",
             f"{'':<6}{'step ms':>10}{'GEMM floor ms':>15}{'of floor':>10}"]
    for p in PRECISIONS:
        lines.append(f"{p:<6}{1e3 * r['step_seconds'][p]:>10.3f}{1e3 * r['gemm_floor_seconds'][p]:>15.3f}"
                     f"{r['of_floor'][p]:>10.2f}")
    lines.append(f"ratio fp32/bf16: training step {r['ratio_fp32_over_bf16']:.2f} (paired {r['ratio_paired']:.2f}), "
                 f"GEMMs alone {r['gemm_ratio_fp32_over_bf16']:.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    print(format_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
