"""The training step on a GPU: eager vs CUDA graph vs stacked graphs, against the captured floor.

Run from the repository root, for example::

    python benchmarks/bench_gpu_step.py --json bench_gpu_step.json --log bench_gpu_step.log
    python benchmarks/bench_gpu_step.py --tiny      # CPU, seconds: the mechanics, graph parts skipped

Everything at the paper profile's size unless told otherwise (MLP7, 6 x 2048, batch 128, all of
CIFAR-10), for each precision (fp32, tf32), in one process, medians of ``--repeats``:

* ``agreement`` (fp32): two models (lr and 2 lr) for one short epoch with a partial last batch, as a
  CUDA graph, as the same step run eagerly, and each alone with the per-model engine: they must
  agree to floating-point tolerance (parameters within 1e-5 in relative L2 norm, losses 1e-4).
* ``eager``: one MLP, fused Adam, stepped eagerly by the per-model engine, per step.
* ``graph_mlp``: the same step of one ``MLP`` module captured in a CUDA graph (fused capturable Adam).
* ``stacked_graph`` k: ``graphstep.StackedTrainer`` with k models, the code path of
  ``train --batched-seeds`` on CUDA (k = 1 is what one seed would get); per step and per model-step.
* ``stacked_eager`` k: the same step run eagerly (on the CPU in place of the graphs).
* ``floor`` k: the step's GEMMs at the stacked shapes (``torch.bmm``: forward, weight gradient,
  input gradient except for the first layer) plus one fused capturable Adam step over k models'
  parameters, captured in one CUDA graph: what the step cannot go below. ``achieved_over_floor``
  = floor / stacked-graph step at the same k.
* ``epoch`` k: ``StackedTrainer.train_epoch`` over the training set plus ``four_way_evaluation`` of
  each model (what the run recorder evaluates every epoch) (60,000 images at paper size), seconds per epoch per model.
* ``profile_estimate``: the paper profile (3 models x 3 seeds x ``--profile-epochs``) from one
  measured k = 3 epoch (training + evaluation) of each model; snapshots and checkpoints apart.
* ``checkpoint``: one checkpoint of the benchmark model written synchronously
  (``recording.save_checkpoint``) and the time the training loop waits when it is handed to
  ``async_checkpoint.AsyncCheckpointer`` instead.
* ``curves``: test accuracy per epoch of one seed trained in fp32 and in tf32 (same
  initialisation and batch order) and of a second seed in fp32, over ``--curve-epochs``; the
  largest fp32/tf32 difference against the binomial sampling noise of the test set
  (2 x sqrt(p (1 - p) / n_test)) and against the seed-to-seed difference.

Targets (printed with met / NOT met): graph_over_eager_fp32 >= 1.6; stacked_k4_epoch_per_seed_fp32
<= 0.45 s; achieved_over_floor_k4_fp32 >= 0.85; paper_profile_estimate_s <= 540.
CIFAR-10 comes from ``DDD_DATA_ROOT`` as for training; ``--synthetic`` (or no data) uses synthetic images.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # the package, installed or not

from bench_trainer import load_arrays  # noqa: E402

from ddd_support.runs.async_checkpoint import AsyncCheckpointer  # noqa: E402
from ddd_support.config import PROFILES, TrainConfig  # noqa: E402
from ddd_support.train.evaluation import four_way_evaluation  # noqa: E402
from ddd_support.train.stacked import StackedTrainer  # noqa: E402
from ddd_support.models import INPUT_DIM, N_CLASSES, model_from_config, parameter_count  # noqa: E402
from ddd_support.runs.checkpoints import save_checkpoint  # noqa: E402
from ddd_support.train.driver import batch_order, resolve_device  # noqa: E402
from ddd_support.train.engine import Engine  # noqa: E402
from ddd_support.train.optim import make_adam  # noqa: E402
from ddd_support.train.prepare import PreparedData, prepare_data  # noqa: E402

TARGETS = {"graph_over_eager_fp32": (">=", 1.6), "stacked_k4_epoch_per_seed_fp32": ("<=", 0.45),
           "achieved_over_floor_k4_fp32": (">=", 0.85), "paper_profile_estimate_s": ("<=", 540.0)}
SKIPPABLE = ("agreement", "eager", "graph_mlp", "stacked", "floor", "epoch", "profile", "checkpoint", "curves")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="mlp7")
    p.add_argument("--base-width", type=int, default=None, help="default: the paper profile's (512)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--n-train", type=int, default=None, help="default: all 50,000")
    p.add_argument("--n-test", type=int, default=None, help="default: all 10,000")
    p.add_argument("--ks", default="1,2,4,8", help="numbers of stacked models")
    p.add_argument("--precisions", default="fp32,tf32")
    p.add_argument("--steps", type=int, default=50, help="steps per timed step repetition")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--profile-epochs", type=int, default=300)
    p.add_argument("--curve-epochs", type=int, default=20)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--synthetic", action="store_true", help="synthetic images instead of CIFAR-10")
    p.add_argument("--skip", default="", help=f"comma list of parts to skip: {','.join(SKIPPABLE)}")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    p.add_argument("--log", type=Path, default=None, help="write the printed report here too")
    p.add_argument("--tiny", action="store_true", help="seconds on a CPU, synthetic data: keeps the script working")
    args = p.parse_args(argv)
    if args.tiny:
        args.model, args.base_width, args.batch_size = "mlp3", 16, 32
        args.n_train, args.n_test, args.ks, args.steps, args.repeats = 200, 50, "1,2", 3, 1
        args.profile_epochs, args.curve_epochs, args.synthetic = 3, 2, True
    unknown = set(filter(None, args.skip.split(","))) - set(SKIPPABLE)
    if unknown:
        p.error(f"unknown parts to skip: {sorted(unknown)}")
    return args


def config(args: argparse.Namespace, model: str | None = None, **extra) -> TrainConfig:
    values = dict(n_train=args.n_train, n_test=args.n_test, batch_size=args.batch_size, device=args.device,
                  threads=args.threads, progress=False)
    if args.base_width is not None:
        values["base_width"] = args.base_width
    return PROFILES["paper"].config(model or args.model, 0, {**values, **extra})


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def set_precision(precision: str) -> None:
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"


def free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def median_time(fn, device: torch.device, repeats: int) -> float:
    """Median wall seconds of ``fn()`` (synchronised) over ``repeats`` calls, after one untimed call."""
    fn()
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# --------------------------------------------------------------------------- variants
def time_eager(cfg: TrainConfig, d: PreparedData, device: torch.device, steps: int, repeats: int) -> float:
    """Seconds per step of one model trained eagerly (the per-model engine, a group of one)."""
    free(device)  # what the previous measurement left cached
    model = model_from_config(cfg).to(device)
    engine = Engine([model], [cfg], device, stacked=False)
    order = torch.randperm(len(d.x_train))[:steps * cfg.batch_size].to(device)
    return median_time(lambda: engine.train_epoch(d.x_train, d.y_noisy[None], order[None], cfg.batch_size),
                       device, repeats) / steps


def time_graph_mlp(cfg: TrainConfig, d: PreparedData, device: torch.device, steps: int, repeats: int) -> float:
    """Seconds per step of one MLP module's step captured in a CUDA graph (fixed batch indices)."""
    free(device)  # what the previous measurement left cached
    model = model_from_config(cfg).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=torch.tensor(cfg.lr, device=device), fused=True, capturable=True)
    idx = torch.randint(len(d.x_train), (cfg.batch_size,), device=device)

    def step():
        loss = F.cross_entropy(model(d.x_train[idx]), d.y_noisy[idx])
        loss.backward()
        opt.step()

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            opt.zero_grad(set_to_none=True)
            step()
    torch.cuda.current_stream().wait_stream(side)
    opt.zero_grad(set_to_none=True)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()

    def run():
        for _ in range(steps):
            graph.replay()

    return median_time(run, device, repeats) / steps


def stacked_trainer(cfg: TrainConfig, device: torch.device, k: int, graphs: bool) -> StackedTrainer:
    models = [model_from_config(cfg.__class__.from_dict({**cfg.to_dict(), "seed": s})).to(device) for s in range(k)]
    return StackedTrainer(models, device, [cfg.lr] * k, [cfg.weight_decay] * k, graphs=graphs)


def orders_for(n: int, k: int, epoch: int) -> torch.Tensor:
    return torch.stack([batch_order(n, s, epoch) for s in range(k)])


def time_stacked(cfg: TrainConfig, d: PreparedData, device: torch.device, k: int, graphs: bool, steps: int,
                 repeats: int) -> float:
    """Seconds per step (all k models) of ``StackedTrainer`` over steps x batch samples (no remainder)."""
    free(device)  # what the previous measurement left cached
    trainer = stacked_trainer(cfg, device, k, graphs)
    n = steps * cfg.batch_size
    x, ys = d.x_train[:n], d.y_noisy[:n].expand(k, n).contiguous()
    orders = orders_for(n, k, 1)
    seconds = median_time(lambda: trainer.train_epoch(x, ys, orders, cfg.batch_size), device, repeats) / steps
    return seconds


def step_gemm_shapes(widths: tuple[int, ...], batch: int) -> list[tuple[int, int, int]]:
    """(m, k, n) of every GEMM of one step: forward, weight gradient, input gradient (not for the input)."""
    dims = [INPUT_DIM, *widths, N_CLASSES]
    shapes = []
    for layer, (fan_in, fan_out) in enumerate(zip(dims[:-1], dims[1:])):
        shapes += [(batch, fan_in, fan_out), (fan_out, batch, fan_in)]
        if layer > 0:
            shapes.append((batch, fan_out, fan_in))
    return shapes


def time_floor(cfg: TrainConfig, device: torch.device, k: int, steps: int, repeats: int) -> tuple[float, bool]:
    """Seconds of the step's GEMMs (k stacked) plus one fused Adam step over k models' parameters;
    captured in one CUDA graph on CUDA (returns whether it was)."""
    free(device)  # what the previous measurement left cached
    gen = torch.Generator().manual_seed(0)
    ops = [(torch.randn(k, m, kk, generator=gen).to(device), torch.randn(k, kk, n, generator=gen).to(device))
           for m, kk, n in step_gemm_shapes(cfg.widths, cfg.batch_size)]
    dims = [INPUT_DIM, *cfg.widths, N_CLASSES]
    params = [p for a, b in zip(dims[:-1], dims[1:])
              for p in (torch.zeros(k, b, a, device=device), torch.zeros(k, b, device=device))]
    for p in params:
        p.requires_grad_()
        p.grad = torch.full_like(p, 1e-3)
    captured = device.type == "cuda"
    lr = torch.tensor(cfg.lr, device=device) if captured else cfg.lr
    opt = torch.optim.Adam(params, lr=lr, fused=True, capturable=captured)

    def step():
        for a, b in ops:
            torch.bmm(a, b)
        opt.step()

    if not captured:
        return median_time(lambda: [step() for _ in range(steps)], device, repeats) / steps, False
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    seconds = median_time(lambda: [graph.replay() for _ in range(steps)], device, repeats) / steps
    return seconds, True


def time_epoch(cfg: TrainConfig, d: PreparedData, device: torch.device, k: int, graphs: bool,
               repeats: int) -> dict[str, float]:
    """One epoch of k stacked models over the training set plus each model's four-way evaluation."""
    free(device)  # what the previous measurement left cached
    trainer = stacked_trainer(cfg, device, k, graphs)
    n = len(d.x_train)
    ys = d.y_noisy.expand(k, n).contiguous()
    parts: dict[str, list[float]] = {"train": [], "eval": []}
    for epoch in range(repeats + 1):  # the first (capture included) is not counted
        sync(device)
        t0 = time.perf_counter()
        trainer.train_epoch(d.x_train, ys, orders_for(n, k, epoch + 1), cfg.batch_size)
        sync(device)
        t1 = time.perf_counter()
        for model in trainer.models:
            four_way_evaluation(model, d.x_train, d.y_noisy, d.y_true, d.noisy_mask, d.x_test, d.y_test,
                                cfg.eval_batch_size)
        sync(device)
        if epoch:
            parts["train"].append(t1 - t0)
            parts["eval"].append(time.perf_counter() - t1)
    train_s, eval_s = statistics.median(parts["train"]), statistics.median(parts["eval"])
    return {"train_s": train_s, "eval_s": eval_s, "epoch_s": train_s + eval_s,
            "per_seed_s": (train_s + eval_s) / k}


def time_checkpoint(cfg: TrainConfig, device: torch.device) -> dict[str, float]:
    """One checkpoint (weights + Adam state) written synchronously, and handed to AsyncCheckpointer."""
    free(device)  # what the previous measurement left cached
    model = model_from_config(cfg).to(device)
    opt = make_adam([{"params": list(model.parameters()), "lr": cfg.lr, "weight_decay": cfg.weight_decay}], device)
    with torch.no_grad():
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
    opt.step()
    state = lambda: {"model": model.state_dict(), "optimizer": opt.state_dict()}  # noqa: E731
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        sync(device)
        t0 = time.perf_counter()
        save_checkpoint(Path(tmp), state(), 1)
        out["sync_s"] = time.perf_counter() - t0
        with AsyncCheckpointer(pin=device.type == "cuda") as writer:
            for epoch in (2, 3):  # the second submit finds pinned buffers cached
                writer.wait()
                sync(device)
                t0 = time.perf_counter()
                writer.submit(state(), lambda s, e=epoch: save_checkpoint(Path(tmp), s, e))
                out["async_submit_s"] = time.perf_counter() - t0
    out["megabytes"] = sum(p.numel() for p in model.parameters()) * 3 * 4 / 1e6
    return out


def agreement(cfg: TrainConfig, d: PreparedData, device: torch.device, steps: int) -> dict:
    """One epoch of ``steps`` full batches plus a partial one, two models with learning rates lr and
    2 lr: the stacked step as a CUDA graph, eagerly, and each model alone (the per-model engine);
    parameter differences (relative L2 norm over all parameters; the largest one in units of the
    larger lr, i.e. of Adam steps) and loss differences."""
    free(device)  # what the previous measurement left cached
    n = steps * cfg.batch_size + cfg.batch_size // 3
    x, y = d.x_train[:n], d.y_noisy[:n]
    cfgs = [cfg.__class__.from_dict({**cfg.to_dict(), "seed": s, "lr": cfg.lr * (s + 1)}) for s in (0, 1)]
    orders = orders_for(n, 2, 1)
    variants: dict[str, tuple[list, list[float]]] = {}
    separate, losses = [], []
    for j, c in enumerate(cfgs):
        model = model_from_config(c).to(device)
        losses += Engine([model], [c], device, stacked=False).train_epoch(x, y[None], orders[j][None], c.batch_size)
        separate.append(model)
    variants["separate"] = (separate, losses)
    for name, graphs in (("stacked_eager", False), ("stacked_graph", True)):
        if graphs and device.type != "cuda":
            continue
        models = [model_from_config(c).to(device) for c in cfgs]
        trainer = StackedTrainer(models, device, [c.lr for c in cfgs], graphs=graphs)
        variants[name] = (models, trainer.train_epoch(x, y.expand(2, n).contiguous(), orders, cfg.batch_size))

    def compare(a: str, b: str) -> dict[str, float]:
        (ma, la), (mb, lb) = variants[a], variants[b]
        pairs = [(p.detach().double(), q.detach().double()) for m1, m2 in zip(ma, mb)
                 for p, q in zip(m1.parameters(), m2.parameters())]
        diff = sum(((p - q) ** 2).sum().item() for p, q in pairs)
        norm = sum((q ** 2).sum().item() for _, q in pairs)
        return {"param_rel_l2": math.sqrt(diff / norm),
                "max_abs_param_diff_in_lr": max((p - q).abs().max().item() for p, q in pairs) / cfgs[1].lr,
                "max_loss_rel_diff": max(abs(u - v) / abs(v) for u, v in zip(la, lb))}

    out: dict = {"steps": steps + 1, "samples": n, "lrs": [c.lr for c in cfgs]}
    for a, b in (("stacked_eager", "separate"), ("stacked_graph", "separate"), ("stacked_graph", "stacked_eager")):
        if a in variants:
            out[f"{a}_vs_{b}"] = compare(a, b)
    out["agree"] = all(v["param_rel_l2"] < 1e-5 and v["max_loss_rel_diff"] < 1e-4
                       for v in out.values() if isinstance(v, dict))
    return out


def test_accuracy_curve(cfg: TrainConfig, d: PreparedData, device: torch.device, seed: int, precision: str,
                        epochs: int) -> list[float]:
    """Test accuracy after each of ``epochs`` epochs of one model (stacked step, k = 1)."""
    free(device)  # what the previous measurement left cached
    set_precision(precision)
    cfg = cfg.__class__.from_dict({**cfg.to_dict(), "seed": seed})
    trainer = StackedTrainer([model_from_config(cfg).to(device)], device, [cfg.lr])
    n = len(d.x_train)
    accs = []
    for epoch in range(1, epochs + 1):
        trainer.train_epoch(d.x_train, d.y_noisy[None], batch_order(n, seed, epoch)[None], cfg.batch_size)
        m, _ = four_way_evaluation(trainer.models[0], d.x_train, d.y_noisy, d.y_true, d.noisy_mask, d.x_test,
                                   d.y_test, cfg.eval_batch_size)
        accs.append(m["test_acc"])
    return accs


def compare_curves(fp32: list[float], tf32: list[float], other_seed: list[float], n_test: int) -> dict:
    p = statistics.fmean(fp32)
    noise = 2 * math.sqrt(max(p * (1 - p), 1e-12) / n_test)
    diff = max(abs(a - b) for a, b in zip(fp32, tf32))
    seeds = max(abs(a - b) for a, b in zip(fp32, other_seed))
    return {"test_acc_fp32": fp32, "test_acc_tf32": tf32, "test_acc_fp32_seed1": other_seed,
            "max_abs_diff_tf32": diff, "max_abs_diff_seeds": seeds, "two_sd_sampling_noise": noise,
            "tf32_within_sampling_noise": diff <= noise}


# --------------------------------------------------------------------------- driver
def run(args: argparse.Namespace, say) -> dict:
    skip = set(filter(None, args.skip.split(",")))
    ks = sorted({int(k) for k in args.ks.split(",")})
    cfg = config(args)
    device = resolve_device(cfg.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = device.type == "cuda"
    no_graph = {"skipped": "CUDA graphs need a CUDA device"}
    arrays = load_arrays(argparse.Namespace(synthetic=args.synthetic, n_train=args.n_train or 50000,
                                            n_test=args.n_test or 10000))
    d = prepare_data(cfg, arrays, device)
    setup = {"device": str(device), "device_name": torch.cuda.get_device_name() if cuda else "cpu",
             "torch": torch.__version__, "model": cfg.model, "widths": list(cfg.widths),
             "parameters": parameter_count(cfg.widths), "batch_size": cfg.batch_size, "n_train": len(d.x_train),
             "n_test": len(d.x_test), "data": arrays.source, "ks": ks, "steps": args.steps,
             "repeats": args.repeats, "threads": torch.get_num_threads()}
    say(f"device {setup['device']} ({setup['device_name']}), torch {setup['torch']}, {cfg.model} "
        f"{cfg.widths[0]}x{len(cfg.widths)} ({setup['parameters'] / 1e6:.1f} M parameters), batch {cfg.batch_size}, "
        f"n_train {setup['n_train']}, n_test {setup['n_test']}, data {setup['data']}, "
        f"{args.steps} steps x median of {args.repeats}")
    results: dict = {"setup": setup, "precisions": {}}
    if "agreement" not in skip:
        set_precision("fp32")
        results["agreement"] = a = agreement(cfg, d, device, min(args.steps, 20))
        say(f"agreement, fp32, {a['steps']} steps (the last partial), lrs {a['lrs']}: " + "; ".join(
            f"{k}: params rel. L2 {v['param_rel_l2']:.1e} (largest {v['max_abs_param_diff_in_lr']:.2f} lr), "
            f"loss {v['max_loss_rel_diff']:.1e}"
            for k, v in a.items() if isinstance(v, dict)) + (" (agree)" if a["agree"] else " (DO NOT agree)"))
    for precision in args.precisions.split(","):
        set_precision(precision)
        if not cuda and precision == "tf32":
            say("tf32: no effect off CUDA (the CPU computes fp32); timed all the same")
        r: dict = {"step_ms": {}, "floor_ms": {}, "achieved_over_floor": {}, "epoch": {}}
        ms = lambda s: s * 1e3  # noqa: E731
        if "eager" not in skip:
            r["step_ms"]["eager"] = ms(time_eager(cfg, d, device, args.steps, args.repeats))
        if "graph_mlp" not in skip:
            r["step_ms"]["graph_mlp"] = (ms(time_graph_mlp(cfg, d, device, args.steps, args.repeats)) if cuda
                                         else no_graph)
        if "stacked" not in skip:
            r["step_ms"]["stacked_graph"] = {}
            r["step_ms"]["stacked_eager"] = {}
            for k in ks:
                if cuda:
                    r["step_ms"]["stacked_graph"][k] = ms(time_stacked(cfg, d, device, k, True, args.steps,
                                                                       args.repeats))
                if not cuda or k == 1:
                    r["step_ms"]["stacked_eager"][k] = ms(time_stacked(cfg, d, device, k, False, args.steps,
                                                                       args.repeats))
            if not cuda:
                r["step_ms"]["stacked_graph"] = no_graph
        if "floor" not in skip:
            for k in ks:
                seconds, captured = time_floor(cfg, device, k, args.steps, args.repeats)
                r["floor_ms"][k] = ms(seconds)
                r["floor_captured"] = captured
                stacked = r["step_ms"].get("stacked_graph" if cuda else "stacked_eager", {})
                if isinstance(stacked, dict) and k in stacked:
                    r["achieved_over_floor"][k] = r["floor_ms"][k] / stacked[k]
        if "epoch" not in skip:
            for k in ks:
                r["epoch"][k] = time_epoch(cfg, d, device, k, cuda, args.repeats)
        results["precisions"][precision] = r
        report_precision(precision, r, say)
    set_precision(args.precisions.split(",")[0])
    if "profile" not in skip:
        per_model = {}
        for model in ("mlp3", "mlp5", "mlp7"):
            mcfg = config(args, model)
            per_model[model] = time_epoch(mcfg, d, device, 3, cuda, 1)
        total = sum(v["epoch_s"] for v in per_model.values()) * args.profile_epochs
        results["profile_estimate"] = {"precision": args.precisions.split(",")[0], "epochs": args.profile_epochs,
                                       "per_model_k3": per_model, "seconds": total}
        say(f"paper profile estimate (3 models x 3 stacked seeds x {args.profile_epochs} epochs, training + "
            f"evaluation, {results['profile_estimate']['precision']}): {total:.0f} s; per k=3 epoch: "
            + ", ".join(f"{m} {v['epoch_s']:.3f} s" for m, v in per_model.items()))
    if "checkpoint" not in skip:
        results["checkpoint"] = time_checkpoint(cfg, device)
        c = results["checkpoint"]
        say(f"checkpoint of one {cfg.model} ({c['megabytes']:.0f} MB of weights + Adam state): written in the loop "
            f"{c['sync_s']:.3f} s; handed to the background writer {c['async_submit_s']:.3f} s")
    if "curves" not in skip and args.curve_epochs > 0:
        precisions = args.precisions.split(",")
        if "fp32" in precisions and "tf32" in precisions:
            fp32 = test_accuracy_curve(cfg, d, device, 0, "fp32", args.curve_epochs)
            tf32 = test_accuracy_curve(cfg, d, device, 0, "tf32", args.curve_epochs)
            seed1 = test_accuracy_curve(cfg, d, device, 1, "fp32", args.curve_epochs)
            results["curves"] = compare_curves(fp32, tf32, seed1, len(d.x_test))
            c = results["curves"]
            say(f"tf32 vs fp32 over {args.curve_epochs} epochs (seed 0, same init and order): largest test-accuracy "
                f"difference {c['max_abs_diff_tf32']:.4f}, 2 sd of sampling noise {c['two_sd_sampling_noise']:.4f} "
                f"({'within' if c['tf32_within_sampling_noise'] else 'NOT within'}); seed 0 vs seed 1 in fp32: "
                f"{c['max_abs_diff_seeds']:.4f}")
    results["targets"] = targets(results)
    for name, t in results["targets"].items():
        value = "n/a" if t["value"] is None else f"{t['value']:.3f}"
        verdict = (f"  {t['note']}" if "note" in t else "" if t["met"] is None
                   else "  met" if t["met"] else "  NOT met")
        say(f"target {name}: {value} (target {t['target']}){verdict}")
    return results


def report_precision(precision: str, r: dict, say) -> None:
    steps = r["step_ms"]
    say(f"[{precision}] step, ms:")
    for name in ("eager", "graph_mlp"):
        if name in steps:
            value = steps[name]
            say(f"  {name:<14} {value:8.3f}" if isinstance(value, float) else f"  {name:<14} {value['skipped']}")
    for name in ("stacked_graph", "stacked_eager"):
        table = steps.get(name)
        if isinstance(table, dict) and "skipped" in table:
            say(f"  {name:<14} {table['skipped']}")
        elif table:
            say(f"  {name:<14} " + ", ".join(f"k={k}: {v:.3f} ({v / k:.3f} per model)" for k, v in table.items()))
    if r["floor_ms"]:
        kind = "captured" if r.get("floor_captured") else "eager, not captured"
        say(f"  floor ({kind}) " + ", ".join(f"k={k}: {v:.3f}" for k, v in r["floor_ms"].items()))
    if r["achieved_over_floor"]:
        say("  achieved/floor " + ", ".join(f"k={k}: {v:.2f}" for k, v in r["achieved_over_floor"].items()))
    for k, e in r["epoch"].items():
        say(f"  epoch k={k}: train {e['train_s']:.3f} s + evaluation {e['eval_s']:.3f} s = {e['epoch_s']:.3f} s, "
            f"{e['per_seed_s']:.3f} s per seed")


def targets(results: dict) -> dict:
    fp32 = results["precisions"].get("fp32", {})
    steps = fp32.get("step_ms", {})
    graph = steps.get("stacked_graph", {})
    values = {
        "graph_over_eager_fp32": (steps["eager"] / graph[1] if isinstance(graph, dict) and 1 in graph
                                  and "eager" in steps else None),
        "stacked_k4_epoch_per_seed_fp32": fp32.get("epoch", {}).get(4, {}).get("per_seed_s"),
        "achieved_over_floor_k4_fp32": (fp32.get("achieved_over_floor", {}).get(4)
                                        if fp32.get("floor_captured") else None),
        "paper_profile_estimate_s": results.get("profile_estimate", {}).get("seconds"),
    }
    s = results["setup"]
    paper_size = (s["device"].startswith("cuda") and s["model"] == "mlp7" and s["widths"] == [2048] * 6
                  and s["batch_size"] == 128 and s["n_train"] == 50000)
    out = {}
    for name, (op, limit) in TARGETS.items():
        v = values[name]
        judged = v is not None and paper_size and (name != "paper_profile_estimate_s"
                                                   or results["profile_estimate"]["epochs"] == 300)
        met = (v >= limit if op == ">=" else v <= limit) if judged else None
        out[name] = {"value": v, "target": f"{op} {limit}", "met": met,
                     **({} if judged or v is None else {"note": "not judged: not the paper size on CUDA"})}
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    log = io.StringIO()

    def say(line: str) -> None:
        print(line, flush=True)
        log.write(line + "\n")

    results = run(args, say)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    if args.log:
        args.log.write_text(log.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
