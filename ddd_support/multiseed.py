"""Several seeds of one model trained in one process as one batched computation.

Each seed keeps its own initialisation (``model_from_config``), label noise and batch order
(``prepare_data``, ``batch_order``) and its own run directory, written by the same
``training.RunRecorder`` as ``training.train``; only the training step is batched: the k
losses are summed (so each seed's gradient is its own) and one backward pass and one fused
Adam step serve all seeds. On a GPU the k weight matrices of a layer are also stacked and
multiplied with ``torch.bmm``; on the CPU each seed keeps its own GEMMs, which makes the
result bit-identical to separate runs. Evaluation, snapshots and checkpoints go through each
seed's own ``MLP`` module, so a batched run can be resumed by ``training.train`` and the other
way round. ``train_seconds`` of each seed is its share (1/k) of the batched epoch's wall time, so
sums over runs stay wall time.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import data as data_mod
from .config import TrainConfig
from .errors import ConfigError
from .models import MLP, model_from_config
from .training import (RunRecorder, apply_runtime_settings, autocast_dtype, batch_order, make_optimizer,
                       resolve_device, train)

#: Config keys that may differ between the seeds of one batch (the rest must be equal).
PER_SEED_KEYS = frozenset({"seed", "noise_seed", "order_seed", "progress"})


class StackedMLP(nn.Module):
    """k MLPs of equal widths as one module: parameters (k, ...) in ``MLP.parameters()`` order."""

    def __init__(self, models: list[MLP]) -> None:
        super().__init__()
        per_model = [list(m.parameters()) for m in models]
        self.k = len(models)
        self.stacked = nn.ParameterList(
            nn.Parameter(torch.stack([p.detach() for p in group])) for group in zip(*per_model))
        with torch.no_grad():  # each seed's module now reads and shows the stacked values
            for j, params in enumerate(per_model):
                for p, s in zip(params, self.stacked):
                    p.data = s.data[j]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (k, B, classes) of inputs (k, B, features)."""
        params = list(self.stacked)
        for w, b in zip(params[0:-2:2], params[1:-2:2]):
            x = F.relu(torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2)))
        return torch.baddbmm(params[-1].unsqueeze(1), x, params[-2].transpose(1, 2))


class SeedBatch:
    """k seeds' models under one optimizer, stepped together.

    ``stacked`` (default off on CPU): weights stacked and multiplied with ``torch.bmm``, which
    pays on a GPU. Otherwise each seed keeps its own parameter tensors and GEMMs, and the
    batch shares the Python loop, the backward call and one fused Adam step: bit-identical to
    separate runs (the CPU is GEMM-bound, so batched GEMMs would gain nothing there).
    """

    def __init__(self, models: list[MLP], optimizers: list[torch.optim.Optimizer], cfg: TrainConfig,
                 device: torch.device, stacked: bool | None = None) -> None:
        self.models, self.k = models, len(models)
        self.stacked = device.type != "cpu" if stacked is None else stacked
        self.module: nn.Module = StackedMLP(models) if self.stacked else nn.ModuleList(models)
        self.n_params = len(list(models[0].parameters()))
        self.opt = make_optimizer(self.module, cfg, device)
        self._per_seed_groups = [o.state_dict()["param_groups"] for o in optimizers]
        states = [o.state_dict()["state"] for o in optimizers]
        if states[0]:  # resumed: the per-seed Adam moments become the batch's
            self.opt.load_state_dict({"state": self._join(states),
                                      "param_groups": self.opt.state_dict()["param_groups"]})

    def _join(self, states: list[dict]) -> dict:
        if not self.stacked:
            return {j * self.n_params + i: s[i] for j, s in enumerate(states) for i in s}
        return {i: {key: torch.stack([s[i][key] for s in states]) if v.dim() else v
                    for key, v in states[0][i].items()} for i in states[0]}

    def _split(self, j: int) -> dict:
        state = self.opt.state_dict()["state"]
        if not self.stacked:
            return {i: {key: v.clone() for key, v in state[j * self.n_params + i].items()}
                    for i in range(self.n_params) if j * self.n_params + i in state}
        return {i: {key: v[j].clone() if v.dim() else v.clone() for key, v in s.items()} for i, s in state.items()}

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(k, B, classes) logits of inputs (k, B, features)."""
        if self.stacked:
            return self.module(x)
        return torch.stack([m(xx) for m, xx in zip(self.models, x)])

    def train_epoch(self, x: torch.Tensor, ys: torch.Tensor, orders: torch.Tensor, batch_size: int,
                    amp_dtype: torch.dtype | None) -> list[float]:
        """One epoch of every seed (row j of ``orders`` and ``ys``); returns each seed's mean loss."""
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
        """Seed j's checkpoint in the format ``training.train`` writes (copies, not views)."""
        model = {k: v.clone() for k, v in self.models[j].state_dict().items()}
        return {"model": model, "optimizer": {"state": self._split(j), "param_groups": self._per_seed_groups[j]}}


def check_batchable(cfgs: list[TrainConfig]) -> None:
    """Raise ConfigError unless the configs differ only in per-seed keys (and seeds are distinct)."""
    if not cfgs:
        raise ConfigError("train_seeds needs at least one config")
    first = cfgs[0].to_dict()
    for cfg in cfgs[1:]:
        diff = sorted(k for k, v in cfg.to_dict().items() if k not in PER_SEED_KEYS and v != first[k])
        if diff:
            raise ConfigError(f"seeds trained together must share every setting but the seed; {diff} differ")
    seeds = [c.seed for c in cfgs]
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"each seed may appear once, got {seeds}")


def train_seeds(cfgs: list[TrainConfig], out: str | os.PathLike = "runs",
                arrays: data_mod.CifarArrays | None = None) -> list[Path]:
    """Train the seeds of ``cfgs`` together, each into its own run directory; returns the directories.

    Complete runs are skipped; runs that stopped at different epochs are finished one by one
    with ``training.train`` (same result, no batching).
    """
    check_batchable(cfgs)
    cfg0 = cfgs[0]
    device = resolve_device(cfg0.device)
    apply_runtime_settings(cfg0)
    runs = [RunRecorder(cfg, out, device) for cfg in cfgs]
    todo = [r for r in runs if not r.complete]
    if not todo:
        return [r.run_dir for r in runs]
    if arrays is None:
        arrays = data_mod.load_cifar10(cfg0.data_root, cfg0.data_source, progress=cfg0.progress)
    shared = todo[0].prepare(arrays)
    for r in todo[1:]:
        r.prepare(arrays)
        r.prepared.x_train, r.prepared.x_test = shared.x_train, shared.x_test  # equal: one copy
    models = [model_from_config(r.cfg).to(device) for r in todo]
    optimizers = [make_optimizer(m, r.cfg, device) for m, r in zip(models, todo)]
    starts = {r.begin(m, o) for r, m, o in zip(todo, models, optimizers)}
    if len(starts) > 1:
        return [train(r.cfg, out, arrays) if r in todo else r.run_dir for r in runs]
    _train_batched(todo, models, optimizers, shared.x_train, starts.pop(), device)
    return [r.run_dir for r in runs]


def _train_batched(runs: list[RunRecorder], models: list[MLP], optimizers: list[torch.optim.Optimizer],
                   x: torch.Tensor, start: int, device: torch.device) -> None:
    from tqdm.auto import tqdm

    cfg = runs[0].cfg
    batch = SeedBatch(models, optimizers, cfg, device)
    ys = torch.stack([r.prepared.y_noisy for r in runs])
    amp_dtype = autocast_dtype(cfg)
    seeds = ",".join(str(r.cfg.seed) for r in runs)
    bar = tqdm(range(start + 1, cfg.epochs + 1), desc=f"{cfg.model} seeds {seeds}", unit="epoch",
               initial=start, total=cfg.epochs, disable=not cfg.progress)
    for epoch in bar:
        t0 = time.perf_counter()
        orders = torch.stack([batch_order(len(x), r.cfg.resolved_order_seed, epoch) for r in runs])
        losses = batch.train_epoch(x, ys, orders, cfg.batch_size, amp_dtype)
        seconds = (time.perf_counter() - t0) / len(runs)
        for j, (r, loss) in enumerate(zip(runs, losses)):
            r.end_epoch(epoch, models[j], loss, seconds, lambda j=j: batch.checkpoint_state(j))
    bar.close()
    for r in runs:
        r.finish()
