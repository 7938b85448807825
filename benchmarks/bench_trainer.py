"""Speed of the instrumented trainer against bare training, the usual loop and the machine's GEMM rate.

Run from the repository root, for example::

    python benchmarks/bench_trainer.py --model mlp7 --batch-size 128 --n-train 2000 --epochs 1 --repeats 3
    python benchmarks/bench_trainer.py --tiny --json bench.json      # seconds; what CI runs

All variants train the same model (same init) on the same data at the same batch size, and
their repetitions are interleaved, so a busy machine slows them alike; medians are reported.

* ``instrumented``: our trainer per epoch = the engine's epoch (``train.engine.Engine``) + ``four_way_evaluation`` +
  metrics.csv write + checkpoint (every ``checkpoint_every`` epochs) + an activation snapshot
  weighted by the profile's snapshot rate over its full epoch count.
* ``bare``: the engine's epoch alone (recording off).
* ``conventional``: ``benchmarks/conventional.py``, per-sample PIL decoding, DataLoader, default
  Adam, four evaluation loops (batch size as in training).
* ``end_to_end``: ``training.train`` into a fresh folder, wall time / epochs (setup, epoch 0 and
  the short run's snapshot schedule included: a pessimistic cross-check).
* ratios: from the medians, and (``ratios_paired``) the median of each repetition's own ratio;
  ``instrumented_over_own_training`` divides the instrumented epoch by its own training part,
  measured within the same epochs, so a loaded machine disturbs it least.
* ``ceiling``: the GEMMs of one training step at the model's shapes (forward, weight gradient,
  input gradient except for the first layer), timed with ``torch.mm``. Achieved FLOP/s = those
  GEMM FLOPs per sample x trained samples/s (about 6 x parameters x samples/s).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # the package, installed or not

import conventional  # noqa: E402

from ddd_support.data import cifar as data_mod  # noqa: E402
from ddd_support.config import PROFILES, TrainConfig, snapshot_epochs  # noqa: E402
from ddd_support.errors import DataError  # noqa: E402
from ddd_support.train.evaluation import four_way_evaluation  # noqa: E402
from ddd_support.models import INPUT_DIM, N_CLASSES, model_from_config, parameter_count  # noqa: E402
from ddd_support.files import atomic_savez, atomic_write_text  # noqa: E402
from ddd_support.runs.checkpoints import save_checkpoint  # noqa: E402
from ddd_support.runs.schema import METRIC_COLUMNS  # noqa: E402
from ddd_support.train.driver import apply_runtime_settings, batch_order, resolve_device, train  # noqa: E402
from ddd_support.train.engine import Engine  # noqa: E402
from ddd_support.train.prepare import PreparedData, prepare_data, take_snapshot  # noqa: E402

TARGETS = {"instrumented_over_bare": ("<=", 1.3), "ours_over_conventional": (">=", 2.0),
           "achieved_over_ceiling": (">=", 0.6)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="mlp7")
    p.add_argument("--profile", default="paper", help="profile whose values (schedule, widths) are used")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--n-train", type=int, default=2000)
    p.add_argument("--n-test", type=int, default=None, help="default: n_train / 5 (CIFAR-10's ratio)")
    p.add_argument("--epochs", type=int, default=1, help="epochs per timed repetition")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--base-width", type=int, default=None)
    p.add_argument("--precision", default="fp32", choices=("fp32", "tf32", "bf16"))
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers of the conventional loop")
    p.add_argument("--seeds", default=None, help="also time k seeds batched, e.g. 1,2,4")
    p.add_argument("--synthetic", action="store_true", help="synthetic images instead of CIFAR-10")
    p.add_argument("--skip", default="", help="comma list of variants to skip: conventional,end_to_end")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--tiny", action="store_true", help="a few seconds, synthetic data: keeps the script working")
    args = p.parse_args(argv)
    if args.tiny:
        args.model, args.n_train, args.n_test, args.base_width = "mlp3", 100, 50, 32
        args.epochs, args.repeats, args.synthetic, args.batch_size = 1, 1, True, 32
        args.seeds = args.seeds if args.seeds is not None else "1,2"
    if args.n_test is None:
        args.n_test = max(10, args.n_train // 5)
    return args


# --------------------------------------------------------------------------- setup
def synthetic_arrays(n_train: int, n_test: int, seed: int = 0) -> data_mod.CifarArrays:
    """Class-dependent colour patterns plus noise, CIFAR-10 shaped."""
    rng = np.random.default_rng(seed)
    patterns = rng.integers(40, 215, size=(10, 1, 1, 3))

    def make(n):
        y = np.arange(n) % 10
        x = np.clip(patterns[y] + rng.normal(0, 40, size=(n, 32, 32, 3)), 0, 255).astype(np.uint8)
        return x, y.astype(np.int64)

    (xtr, ytr), (xte, yte) = make(n_train), make(n_test)
    return data_mod.CifarArrays(xtr, ytr, xte, yte, source="synthetic")


def load_arrays(args: argparse.Namespace) -> data_mod.CifarArrays:
    if not args.synthetic:
        try:
            return data_mod.load_cifar10(progress=False)
        except DataError as exc:
            print(f"CIFAR-10 not available ({str(exc)[:80]}...); using synthetic data", file=sys.stderr)
    return synthetic_arrays(args.n_train, args.n_test)


def make_config(args: argparse.Namespace, **extra) -> TrainConfig:
    overrides = dict(n_train=args.n_train, n_test=args.n_test, batch_size=args.batch_size,
                     precision=args.precision, device=args.device, threads=args.threads, progress=False)
    if args.base_width is not None:
        overrides["base_width"] = args.base_width
    return PROFILES[args.profile].config(args.model, 0, {**overrides, **extra})


def snapshot_rate(cfg: TrainConfig, profile_epochs: int) -> float:
    """Snapshots per trained epoch over the profile's whole run (epoch 0 excluded)."""
    n = len(snapshot_epochs(profile_epochs, cfg.snapshot_dense_until, cfg.snapshot_per_decade))
    return (n - 1) / profile_epochs


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


# --------------------------------------------------------------------------- variants
def warm_up(cfg: TrainConfig, d: PreparedData, device: torch.device) -> None:
    """One step of our engine and of plain Adam: first calls import and allocate, outside the timings."""
    model = model_from_config(cfg).to(device)
    Engine([model], [cfg], device).train_epoch(d.x_train, d.y_noisy[None], torch.arange(cfg.batch_size)[None],
                                               cfg.batch_size)
    torch.optim.Adam(model.parameters(), lr=cfg.lr).step()


def time_ours(cfg: TrainConfig, d: PreparedData, device: torch.device, epochs: int,
              instrumented: bool, run_dir: Path) -> dict[str, float]:
    """Seconds per epoch of our trainer, by component (only ``train`` when not instrumented)."""
    model = model_from_config(cfg).to(device)
    engine = Engine([model], [cfg], device)
    parts = {"train": 0.0, "eval": 0.0, "snapshot": 0.0, "metrics_io": 0.0, "checkpoint": 0.0}
    rows = []
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        order = batch_order(len(d.x_train), cfg.resolved_order_seed, epoch)
        [loss] = engine.train_epoch(d.x_train, d.y_noisy[None], order[None], cfg.batch_size)
        sync(device)
        t1 = time.perf_counter()
        parts["train"] += t1 - t0
        if not instrumented:
            continue
        m, _ = four_way_evaluation(model, d.x_train, d.y_noisy, d.y_true, d.noisy_mask, d.x_test, d.y_test,
                                   cfg.eval_batch_size)
        t2 = time.perf_counter()
        snap = take_snapshot(model, d, cfg)
        atomic_savez(run_dir / "snapshots" / f"epoch_{epoch:05d}.npz", epoch=np.int64(epoch), **snap)
        t3 = time.perf_counter()
        rows.append({"epoch": epoch, **m, "train_loss": loss, "train_seconds": t1 - t0, "eval_seconds": t2 - t1})
        frame = pd.DataFrame(rows, columns=list(METRIC_COLUMNS))
        atomic_write_text(run_dir / "metrics.csv", frame.to_csv(index=False, float_format="%.17g"))
        t4 = time.perf_counter()
        save_checkpoint(run_dir, engine.checkpoint_state(0), epoch)
        t5 = time.perf_counter()
        for key, dt in (("eval", t2 - t1), ("snapshot", t3 - t2), ("metrics_io", t4 - t3), ("checkpoint", t5 - t4)):
            parts[key] += dt
    return {k: v / epochs for k, v in parts.items()}


def time_conventional(cfg: TrainConfig, arrays: data_mod.CifarArrays, d: PreparedData,
                      device: torch.device, epochs: int, workers: int) -> dict[str, float]:
    """Seconds per epoch of the usual loop (training, then four evaluation loops)."""
    model = model_from_config(cfg).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loaders = conventional.make_loaders(
        arrays.x_train[d.train_indices], d.labels.noisy, d.labels.original, d.labels.mask,
        arrays.x_test[d.test_indices], d.y_test.cpu().numpy(), d.mean, d.std, cfg.batch_size, workers)
    total = {"train": 0.0, "eval": 0.0}
    for _ in range(epochs):
        t_train, t_eval = conventional.timed_epoch(model, optimizer, loaders, device)
        total["train"] += t_train
        total["eval"] += t_eval
    return {k: v / epochs for k, v in total.items()}


def time_end_to_end(cfg: TrainConfig, arrays: data_mod.CifarArrays, epochs: int) -> dict[str, float]:
    """Wall seconds per epoch of ``training.train`` into a fresh folder."""
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        train(cfg.__class__.from_dict({**cfg.to_dict(), "epochs": epochs}), tmp, arrays)
        return {"total": (time.perf_counter() - t0) / epochs}


def gemm_shapes(widths: tuple[int, ...], batch: int) -> list[tuple[int, int, int]]:
    """(m, k, n) of every GEMM of one training step: forward, weight gradient, input gradient."""
    dims = [INPUT_DIM, *widths, N_CLASSES]
    shapes = []
    for layer, (fan_in, fan_out) in enumerate(zip(dims[:-1], dims[1:])):
        shapes.append((batch, fan_in, fan_out))          # x @ W^T
        shapes.append((fan_out, batch, fan_in))          # g^T @ x
        if layer > 0:
            shapes.append((batch, fan_out, fan_in))      # g @ W (the input needs no gradient)
    return shapes


def time_ceiling(shapes: list[tuple[int, int, int]], device: torch.device, dtype: torch.dtype,
                 iters: int = 5) -> float:
    """Median seconds for all GEMMs of one step, each a plain ``torch.mm``."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    ops = [(torch.randn(m, k, generator=gen).to(device, dtype), torch.randn(k, n, generator=gen).to(device, dtype))
           for m, k, n in shapes]
    for a, b in ops:
        torch.mm(a, b)
    times = []
    for _ in range(iters):
        sync(device)
        t0 = time.perf_counter()
        for a, b in ops:
            torch.mm(a, b)
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# --------------------------------------------------------------------------- driver
def run(args: argparse.Namespace) -> dict:
    arrays = load_arrays(args)
    cfg = make_config(args)
    device = resolve_device(cfg.device)
    apply_runtime_settings(cfg)
    d = prepare_data(cfg, arrays, device)
    n = len(d.x_train)
    rate = snapshot_rate(cfg, PROFILES[args.profile].config(args.model).epochs)
    skip = set(filter(None, args.skip.split(",")))
    shapes = gemm_shapes(cfg.widths, cfg.batch_size)
    flops_per_sample = sum(2 * m * k * nn for m, k, nn in shapes) / cfg.batch_size
    gemm_dtype = torch.bfloat16 if cfg.precision == "bf16" else torch.float32

    warm_up(cfg, d, device)
    samples: dict[str, list[dict[str, float]]] = {k: [] for k in ("instrumented", "bare", "conventional",
                                                                  "end_to_end", "ceiling")}
    for rep in range(args.repeats):
        order = ["instrumented", "bare", "conventional", "end_to_end", "ceiling"]
        order = order[rep % len(order):] + order[:rep % len(order)]   # rotate: no variant always first
        for variant in order:
            if variant in skip:
                continue
            with tempfile.TemporaryDirectory() as tmp:
                if variant in ("instrumented", "bare"):
                    res = time_ours(cfg, d, device, args.epochs, variant == "instrumented", Path(tmp))
                elif variant == "conventional":
                    res = time_conventional(cfg, arrays, d, device, args.epochs, args.workers)
                elif variant == "end_to_end":
                    res = time_end_to_end(cfg, arrays, args.epochs)
                else:
                    res = {"gemm_step": time_ceiling(shapes, device, gemm_dtype)}
            samples[variant].append(res)
            print(f"  repeat {rep + 1}/{args.repeats} {variant}: "
                  + ", ".join(f"{k} {v:.3f}s" for k, v in res.items()), file=sys.stderr, flush=True)

    med = {v: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for v, rs in samples.items() if rs}
    results = summarize(med, cfg, n, rate, flops_per_sample)
    per_repeat = [summarize({v: rs[i] for v, rs in samples.items() if len(rs) > i}, cfg, n, rate,
                            flops_per_sample)["ratios"] for i in range(args.repeats)]
    results["ratios_paired"] = {k: statistics.median(r[k] for r in per_repeat) for k in per_repeat[0]}
    if args.seeds:
        from bench_multiseed import time_seed_batches

        results["multiseed"] = time_seed_batches(cfg, arrays, device, [int(k) for k in args.seeds.split(",")],
                                                 args.epochs, args.repeats)
    results["setup"] = {
        "model": cfg.model, "widths": list(cfg.widths), "parameters": parameter_count(cfg.widths),
        "batch_size": cfg.batch_size, "n_train": n, "n_test": len(d.x_test), "epochs_per_repeat": args.epochs,
        "repeats": args.repeats, "precision": cfg.precision, "device": str(device),
        "device_name": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(), "data": arrays.source, "torch": torch.__version__,
        "snapshots_per_epoch": rate, "checkpoint_every": cfg.checkpoint_every,
        "gemm_flops_per_sample": flops_per_sample, "six_params_per_sample": 6 * parameter_count(cfg.widths),
    }
    return results


def summarize(med: dict[str, dict[str, float]], cfg: TrainConfig, n: int, rate: float,
              flops_per_sample: float) -> dict:
    """Per-epoch seconds, samples/s and the ratios, from medians (or from one repetition)."""
    out: dict = {"variants": {}, "ratios": {}, "targets": {k: f"{op} {v}" for k, (op, v) in TARGETS.items()}}

    def add(name, seconds, **extra):
        out["variants"][name] = {"epoch_seconds": seconds, "samples_per_s": n / seconds, **extra}

    bare = med.get("bare", {}).get("train")
    if bare:
        add("bare", bare)
    if "instrumented" in med:
        p = med["instrumented"]
        breakdown = {"train": p["train"], "eval": p["eval"], "snapshot": p["snapshot"] * rate,
                     "metrics_io": p["metrics_io"], "checkpoint": p["checkpoint"] / cfg.checkpoint_every}
        add("instrumented", sum(breakdown.values()), breakdown=breakdown,
            snapshot_seconds_each=p["snapshot"], checkpoint_seconds_each=p["checkpoint"])
    if "conventional" in med:
        c = med["conventional"]
        add("conventional", c["train"] + c["eval"], breakdown=c)
        add("conventional_train_only", c["train"])
    if "end_to_end" in med:
        add("end_to_end", med["end_to_end"]["total"])
    if "ceiling" in med:
        step = med["ceiling"]["gemm_step"]
        out["ceiling"] = {"gemm_seconds_per_step": step, "flops_per_s": flops_per_sample * cfg.batch_size / step,
                          "samples_per_s": cfg.batch_size / step}
    v, r = out["variants"], out["ratios"]
    if "instrumented" in v and "bare" in v:
        r["instrumented_over_bare"] = v["instrumented"]["epoch_seconds"] / v["bare"]["epoch_seconds"]
    if "instrumented" in v:  # the same epochs' recording time over their training time: robust to load
        r["instrumented_over_own_training"] = v["instrumented"]["epoch_seconds"] / v["instrumented"]["breakdown"]["train"]
    if "instrumented" in v and "conventional" in v:
        r["ours_over_conventional"] = v["conventional"]["epoch_seconds"] / v["instrumented"]["epoch_seconds"]
        r["bare_over_conventional_train"] = (v["conventional_train_only"]["epoch_seconds"]
                                             / v["bare"]["epoch_seconds"]) if "bare" in v else math.nan
    if "ceiling" in out:
        for name, var in v.items():
            var["achieved_flops_per_s"] = flops_per_sample * var["samples_per_s"]
        if "bare" in v:
            r["achieved_over_ceiling"] = v["bare"]["achieved_flops_per_s"] / out["ceiling"]["flops_per_s"]
        if "instrumented" in v:
            r["instrumented_achieved_over_ceiling"] = (v["instrumented"]["achieved_flops_per_s"]
                                                       / out["ceiling"]["flops_per_s"])
    return out


def format_table(results: dict) -> str:
    """The results as a plain-text table."""
    s = results["setup"]
    lines = [f"{s['model']} widths {s['widths'][0]}x{len(s['widths'])} ({s['parameters'] / 1e6:.1f} M params), "
             f"batch {s['batch_size']}, n_train {s['n_train']}, n_test {s['n_test']}, {s['precision']}, "
             f"{s['device']} ({s['device_name']}, {s['threads']} threads), data {s['data']}, "
             f"median of {s['repeats']} x {s['epochs_per_repeat']} epoch(s)",
             f"{'variant':<26}{'s/epoch':>10}{'samples/s':>12}{'GFLOP/s':>10}  breakdown (s/epoch)"]
    for name, v in results["variants"].items():
        parts = ", ".join(f"{k} {x:.3f}" for k, x in v.get("breakdown", {}).items())
        gf = v.get("achieved_flops_per_s", math.nan) / 1e9
        lines.append(f"{name:<26}{v['epoch_seconds']:>10.3f}{v['samples_per_s']:>12.1f}{gf:>10.1f}  {parts}")
    if "ceiling" in results:
        c = results["ceiling"]
        lines.append(f"{'ceiling (torch.mm GEMMs)':<26}{'':>10}{c['samples_per_s']:>12.1f}{c['flops_per_s'] / 1e9:>10.1f}"
                     f"  {c['gemm_seconds_per_step'] * 1e3:.1f} ms per step")
    lines.append("ratios:")
    for key, value in results["ratios"].items():
        target = results["targets"].get(key, "")
        ok = ""
        if key in TARGETS:
            op, limit = TARGETS[key]
            ok = "  met" if (value <= limit if op == "<=" else value >= limit) else "  NOT met"
        lines.append(f"  {key:<36}{value:>8.3f}  {('target ' + target) if target else ''}{ok}")
    if "ratios_paired" in results:
        lines.append("ratios, median over repetitions of each repetition's ratio (less sensitive to load swings):")
        lines += [f"  {k:<36}{v:>8.3f}" for k, v in results["ratios_paired"].items()]
    if "multiseed" in results:
        lines.append("k seeds batched in one process (bare training; eval per seed):")
        for row in results["multiseed"]["rows"]:
            lines.append(f"  k={row['k']}: {row['epoch_seconds']:.3f} s/epoch, "
                         f"{row['samples_per_s_per_seed']:.1f} samples/s per seed, "
                         f"cost vs k separate runs {row['cost_vs_separate']:.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = run(args)
    print(format_table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
