"""Several runs of one model trained in one process as one batched computation.

Each run keeps its own initialisation (``model_from_config``), label noise and batch order
(``prepare_data``, ``batch_order``), learning rate and its own run directory, written by the
same ``rundir.RunRecorder`` as ``training.train`` (whose lock it holds for the whole batch, taking
the locks in the order of the directories' paths so that two batches cannot deadlock); only the
training step is batched: the k
losses are summed (so each run's gradient is its own), one backward pass and one fused Adam
step (one parameter group per run) serve all runs. Runs may differ in the values of
``PER_RUN_KEYS`` (seeds, noise rate, learning rate and its schedule, weight decay), not in
anything that changes shapes, data or the loop (model, widths, subset, batch size, epochs...).

On CUDA the k weight matrices of a layer are stacked and the whole step is captured in a CUDA
graph (``graphstep.StackedTrainer``; results equal separate runs to floating-point rounding).
On the CPU each run keeps its own GEMMs, which makes the result bit-identical to separate runs
(``stacked=True`` runs the stacked step eagerly instead). Evaluation, snapshots and checkpoints
go through each run's own ``MLP`` module, so a batched run can be resumed by ``training.train``
and the other way round. ``train_seconds`` of each run is its share (1/k) of the batched
epoch's wall time, so sums over runs stay wall time.

Runs that differ in a value need separate output roots when they share a seed (a run directory
is named by profile, model and seed): ``train_seeds(cfgs, outs)`` takes one root per run, and
``python -m ddd_support.train.batch ... --vary noise_rate=0.0,0.1 --out ROOT`` puts each value
under ``ROOT/noise_rate0.1/...``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import sys
import time
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ddd_support.data import cifar as data_mod
from ddd_support.config import MODELS, TrainConfig, get_profile, parse_overrides
from ddd_support.errors import ConfigError, DDDError
from ddd_support.train.stacked import StackedTrainer
from ddd_support.models import MLP, model_from_config
from ddd_support.runs.schema import run_directory
from ddd_support.runs.recorder import RunRecorder
from ddd_support.train.schedule import lr_at, set_lr
from ddd_support.train.driver import (PreparedData, apply_runtime_settings, autocast_dtype, batch_order, begin_run,
                       check_subset_sizes, make_optimizer, prepare_run, record_epoch, resolve_device, train)

#: Config keys whose values may differ between the runs of one batch (the rest must be equal).
PER_RUN_KEYS = frozenset({"seed", "noise_seed", "order_seed", "noise_rate", "noise_exact_per_class",
                          "lr", "lr_schedule", "weight_decay", "progress"})
PER_SEED_KEYS = PER_RUN_KEYS  # the former name


class SeedBatch:
    """k runs' models under one optimizer, stepped together.

    ``stacked`` (default: on any device but the CPU): ``graphstep.StackedTrainer``, weights
    stacked and multiplied with ``torch.baddbmm``, captured in a CUDA graph on CUDA
    (``graphs``, default on CUDA). Otherwise each run keeps its own parameter tensors and
    GEMMs, and the batch shares the Python loop, the backward call and one fused Adam step:
    bit-identical to separate runs (the CPU is GEMM-bound, so batched GEMMs would gain nothing
    there). ``cfg``: one config for all runs or one per run (their lr and weight decay are used).
    """

    def __init__(self, models: list[MLP], optimizers: list[torch.optim.Optimizer],
                 cfg: TrainConfig | Sequence[TrainConfig], device: torch.device,
                 stacked: bool | None = None, graphs: bool | None = None) -> None:
        self.models, self.k = models, len(models)
        self.cfgs = [cfg] * self.k if isinstance(cfg, TrainConfig) else list(cfg)
        self.stacked = device.type != "cpu" if stacked is None else stacked
        self.n_params = len(list(models[0].parameters()))
        self._per_run_groups = [o.state_dict()["param_groups"][0] for o in optimizers]
        states = [o.state_dict()["state"] for o in optimizers]
        lrs = [c.lr for c in self.cfgs]
        decays = [c.weight_decay for c in self.cfgs]
        if self.stacked:
            self.trainer = StackedTrainer(models, device, lrs, decays, autocast_dtype(self.cfgs[0]), graphs,
                                          states if states[0] else None)
            return
        self.module = nn.ModuleList(models)
        kwargs = {"fused": True} if device.type in ("cuda", "cpu") else {"foreach": True}
        self.opt = torch.optim.Adam([{"params": list(m.parameters()), "lr": lr, "weight_decay": wd}
                                     for m, lr, wd in zip(models, lrs, decays)], lr=lrs[0], **kwargs)
        if states[0]:  # resumed: the per-run Adam moments become the batch's
            self.opt.load_state_dict({"state": {j * self.n_params + i: s[i] for j, s in enumerate(states) for i in s},
                                      "param_groups": self.opt.state_dict()["param_groups"]})

    def set_epoch(self, epoch: int) -> None:
        """Each run's learning rate for epoch ``epoch`` (``schedule.lr_at``)."""
        lrs = [lr_at(c, epoch) for c in self.cfgs]
        if self.stacked:
            self.trainer.set_lrs(lrs)
        else:
            set_lr(self.opt, lrs)

    def lr(self, j: int) -> float:
        """Run j's current learning rate."""
        return self.trainer.lr(j) if self.stacked else float(self.opt.param_groups[j]["lr"])

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(k, B, classes) logits of inputs (k, B, features)."""
        if self.stacked:
            return self.trainer.forward(x)
        return torch.stack([m(xx) for m, xx in zip(self.models, x)])

    def train_epoch(self, x: torch.Tensor, ys: torch.Tensor, orders: torch.Tensor, batch_size: int,
                    amp_dtype: torch.dtype | None) -> list[float]:
        """One epoch of every run (row j of ``orders`` and ``ys``); returns each run's mean loss."""
        if self.stacked:
            if amp_dtype != self.trainer.amp_dtype:
                raise ValueError(f"this batch was set up for autocast {self.trainer.amp_dtype}, not {amp_dtype}")
            return self.trainer.train_epoch(x, ys, orders, batch_size)
        self.module.train()
        orders = orders.to(x.device, non_blocking=True)
        total = torch.zeros(self.k, device=x.device)
        n_batches = 0
        for start in range(0, orders.shape[1], batch_size):
            idx = orders[:, start:start + batch_size]
            with torch.autocast(x.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = self.logits(x[idx])
                yb = torch.gather(ys, 1, idx)
                losses = torch.stack([F.cross_entropy(logits[j], yb[j]) for j in range(self.k)])
            self.opt.zero_grad(set_to_none=True)
            losses.sum().backward()
            self.opt.step()
            total += losses.detach().float()
            n_batches += 1
        return [t / max(n_batches, 1) for t in total.tolist()]

    def checkpoint_state(self, j: int) -> dict:
        """Run j's checkpoint in the format ``training.train`` writes (copies, not views)."""
        model = {k: v.clone() for k, v in self.models[j].state_dict().items()}
        if self.stacked:
            return {"model": model, "optimizer": self.trainer.optimizer_state(j, self._per_run_groups[j])}
        state = self.opt.state_dict()["state"]
        split = {i: {key: v.clone() for key, v in state[j * self.n_params + i].items()}
                 for i in range(self.n_params) if j * self.n_params + i in state}
        group = {**self._per_run_groups[j], "lr": self.lr(j)}
        return {"model": model, "optimizer": {"state": split, "param_groups": [group]}}


def check_batchable(cfgs: list[TrainConfig], outs: Sequence[str | os.PathLike] | None = None) -> None:
    """Raise ConfigError unless the configs differ only in ``PER_RUN_KEYS`` and each run has its
    own run directory (``outs``: the output root of each config; default one shared root)."""
    if not cfgs:
        raise ConfigError("train_seeds needs at least one config")
    first = cfgs[0].to_dict()
    for cfg in cfgs[1:]:
        values = cfg.to_dict()
        diff = sorted(k for k in set(values) | set(first)
                      if k not in PER_RUN_KEYS and values.get(k) != first.get(k))
        if diff:
            raise ConfigError(f"runs trained together may differ only in {', '.join(sorted(PER_RUN_KEYS))}; "
                              f"{diff} differ")
    outs = list(outs) if outs is not None else ["."] * len(cfgs)
    dirs = [run_directory(o, c.profile, c.model, c.seed) for o, c in zip(outs, cfgs)]
    if len(set(dirs)) != len(dirs):
        seeds = [c.seed for c in cfgs]
        raise ConfigError(f"each run directory may appear once (seeds {seeds}); give runs that share a "
                          "seed their own output roots")


def train_seeds(cfgs: list[TrainConfig], out: str | os.PathLike | Sequence[str | os.PathLike] = "runs",
                arrays: data_mod.CifarArrays | None = None) -> list[Path]:
    """Train the runs of ``cfgs`` together, each into its own run directory; returns the directories.

    ``out``: one output root for all, or one per config. Complete runs are skipped; runs that
    stopped at different epochs are finished one by one with ``training.train`` (same result,
    no batching).
    """
    outs = [out] * len(cfgs) if isinstance(out, (str, os.PathLike)) else list(out)
    if len(outs) != len(cfgs):
        raise ConfigError(f"{len(outs)} output roots for {len(cfgs)} configs")
    check_batchable(cfgs, outs)
    cfg0 = cfgs[0]
    device = resolve_device(cfg0.device)
    if arrays is not None:
        check_subset_sizes(cfg0, arrays)  # equal for all runs; before any directory is made
    apply_runtime_settings(cfg0)
    with contextlib.ExitStack() as stack:
        runs = _open_runs(cfgs, outs, device, stack)
        todo = [r for r in runs if not r.complete]
        if not todo:
            return [r.run_dir for r in runs]
        if arrays is None:
            arrays = data_mod.load_cifar10(cfg0.data_root, cfg0.data_source, progress=cfg0.progress)
        data = [prepare_run(r, arrays) for r in todo]
        for d in data[1:]:
            d.x_train, d.x_test = data[0].x_train, data[0].x_test  # equal: one copy
        models = [model_from_config(r.cfg).to(device) for r in todo]
        optimizers = [make_optimizer(m, r.cfg, device) for m, r in zip(models, todo)]
        starts = {begin_run(r, d, m, o) for r, d, m, o in zip(todo, data, models, optimizers)}
        if len(starts) > 1:
            stack.close()  # release the locks: train() takes each again
            return [train(r.cfg, o, arrays) if not r.complete else r.run_dir for r, o in zip(runs, outs)]
        _train_batched(todo, data, models, optimizers, starts.pop(), device)
    return [r.run_dir for r in runs]


def _open_runs(cfgs: list[TrainConfig], outs: list, device: torch.device,
               stack: contextlib.ExitStack) -> list[RunRecorder]:
    """A RunRecorder per config (in their order), the locks taken in the order of the directories' paths."""
    dirs = [run_directory(o, c.profile, c.model, c.seed).resolve() for c, o in zip(cfgs, outs)]
    runs: list[RunRecorder | None] = [None] * len(cfgs)
    for i in sorted(range(len(cfgs)), key=lambda i: str(dirs[i])):
        runs[i] = stack.enter_context(RunRecorder(cfgs[i], outs[i], device))
    return runs


def _train_batched(runs: list[RunRecorder], data: list[PreparedData], models: list[MLP],
                   optimizers: list[torch.optim.Optimizer], start: int, device: torch.device) -> None:
    from tqdm.auto import tqdm

    cfg = runs[0].cfg
    x = data[0].x_train
    batch = SeedBatch(models, optimizers, [r.cfg for r in runs], device)
    ys = torch.stack([d.y_noisy for d in data])
    amp_dtype = autocast_dtype(cfg)
    seeds = ",".join(str(r.cfg.seed) for r in runs)
    bar = tqdm(range(start + 1, cfg.epochs + 1), desc=f"{cfg.model} seeds {seeds}", unit="epoch",
               initial=start, total=cfg.epochs, disable=not cfg.progress)
    for epoch in bar:
        t0 = time.perf_counter()
        batch.set_epoch(epoch)
        orders = torch.stack([batch_order(len(x), r.cfg.resolved_order_seed, epoch) for r in runs])
        losses = batch.train_epoch(x, ys, orders, cfg.batch_size, amp_dtype)
        seconds = (time.perf_counter() - t0) / len(runs)
        for j, (r, loss) in enumerate(zip(runs, losses)):
            record_epoch(r, data[j], epoch, models[j], loss, seconds, lambda j=j: batch.checkpoint_state(j))
    bar.close()
    for r in runs:
        r.finish()


# ---------------------------------------------------------------------------- command line
def variant_name(values: dict) -> str:
    """The folder of one combination of varied values, e.g. ``noise_rate0.1`` or ``lr0.001_seed2``."""
    return "_".join(f"{k}{v}" for k, v in values.items())


def variant_configs(profile: str, model: str, seeds: Sequence[int], overrides: dict, vary: dict[str, list],
                    out: str | os.PathLike) -> tuple[list[TrainConfig], list[Path]]:
    """Every seed x combination of ``vary`` values of one model, and each one's output root
    (``out`` itself when nothing varies, else ``out/<variant_name>``)."""
    prof = get_profile(profile)
    cfgs, outs = [], []
    for combo in itertools.product(*vary.values()) if vary else [()]:
        values = dict(zip(vary, combo))
        for seed in seeds:
            cfgs.append(prof.config(model, seed, {**overrides, **values}))
            outs.append(Path(out) / variant_name(values) if values else Path(out))
    return cfgs, outs


def parse_vary(items: list[str] | None) -> dict[str, list]:
    """``KEY=V1,V2,...`` items into {key: [typed values]}; only ``PER_RUN_KEYS`` may vary."""
    vary: dict[str, list] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--vary {item!r} is not of the form KEY=V1,V2,...")
        key, raw = (s.strip() for s in item.split("=", 1))
        if key not in PER_RUN_KEYS - {"seed", "progress"}:
            raise ConfigError(f"--vary {key}: only {', '.join(sorted(PER_RUN_KEYS - {'seed', 'progress'}))} "
                              "may vary within one batch (use --seed for seeds)")
        vary[key] = [parse_overrides([f"{key}={v}"])[key] for v in raw.split(",") if v.strip()]
    return vary


def main(argv: list[str] | None = None) -> int:
    """``python -m ddd_support.train.batch``: like ``train --batched-seeds``, plus ``--vary``."""
    p = argparse.ArgumentParser(prog="python -m ddd_support.train.batch",
                                description="Train a profile's models with several seeds and value variants "
                                            "batched into one computation per model (stacked, a CUDA graph on CUDA).")
    p.add_argument("--profile", default="smoke")
    p.add_argument("--model", action="append", choices=MODELS, help="repeat for several (default: the profile's)")
    p.add_argument("--seed", type=int, action="append", help="repeat for several (default 0)")
    p.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE", default=[])
    p.add_argument("--vary", action="append", metavar="KEY=V1,V2", default=[],
                   help="train every value side by side, e.g. --vary noise_rate=0.0,0.1,0.2 "
                        "(several --vary: every combination)")
    p.add_argument("--out", default="runs", help="root folder (each variant in its own subfolder)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    from ddd_support.train.runner import is_complete

    try:
        overrides = parse_overrides(args.overrides)
        if args.quiet:
            overrides["progress"] = False
        vary = parse_vary(args.vary)
        models = args.model or list(get_profile(args.profile).models)
        groups = [variant_configs(args.profile, m, args.seed or [0], overrides, vary, args.out) for m in models]
        pending = [c for cfgs, outs in groups for c, o in zip(cfgs, outs) if not is_complete(c, o)]
        arrays = (data_mod.load_cifar10(pending[0].data_root, pending[0].data_source, progress=pending[0].progress)
                  if pending else None)
        for cfgs, outs in groups:
            for run_dir in train_seeds(cfgs, outs, arrays):
                print(run_dir, flush=True)
    except DDDError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
