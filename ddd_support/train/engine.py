"""The engines that step a group of k runs of one shape through an epoch.

``Engine`` picks one of two ways by device (or by ``stacked``):

- per-model (default on the CPU): each run keeps its own parameter tensors and GEMMs; the group
  shares the Python loop, one backward call (the k losses summed, so each gradient is its own
  run's) and one fused Adam step with one parameter group per run. Bit-identical to training
  each run alone (the CPU is GEMM-bound, so batched GEMMs would gain nothing there); a single
  run is a group of one.
- stacked (default elsewhere): ``stacked.StackedTrainer``, the k weight matrices of a layer
  stacked and multiplied with ``torch.baddbmm``, captured in a CUDA graph on CUDA (single
  runs included); equal to separate runs to floating-point rounding.

Both take each run's checkpointed Adam state and give it back in a lone run's format
(``optim``), so a run can be resumed by either engine, alone or in any group.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ddd_support.config import TrainConfig
from ddd_support.models import MLP
from ddd_support.train.optim import load_run_states, make_adam, run_state_dict
from ddd_support.train.schedule import lr_at, set_lr
from ddd_support.train.stacked import StackedTrainer


def autocast_dtype(cfg: TrainConfig) -> torch.dtype | None:
    """The autocast dtype of training (bf16) or None (fp32, tf32)."""
    return torch.bfloat16 if cfg.precision == "bf16" else None


class Engine:
    """k runs' models under one Adam, stepped together (one parameter group per run).

    ``cfgs``: one config per run (their lr, schedule and weight decay are used; the shared
    settings, e.g. precision, from the first). ``optimizer_states``: each run's checkpointed
    Adam ``state`` (keyed 0..n-1), or None for a fresh start. ``stacked``: default on any
    device but the CPU; ``graphs``: CUDA graphs (default on CUDA when stacked).
    """

    def __init__(self, models: list[MLP], cfgs: Sequence[TrainConfig], device: torch.device,
                 optimizer_states: Sequence[dict | None] | None = None, stacked: bool | None = None,
                 graphs: bool | None = None) -> None:
        self.models, self.k, self.cfgs = models, len(models), list(cfgs)
        if len(self.cfgs) != self.k:
            raise ValueError(f"{len(self.cfgs)} configs for {self.k} models")
        self.stacked = device.type != "cpu" if stacked is None else stacked
        self.amp_dtype = autocast_dtype(self.cfgs[0])
        states = list(optimizer_states) if optimizer_states is not None else [None] * self.k
        lrs = [c.lr for c in self.cfgs]
        decays = [c.weight_decay for c in self.cfgs]
        if self.stacked:
            self.trainer = StackedTrainer(models, device, lrs, decays, self.amp_dtype, graphs, states)
            self.opt, self.params = self.trainer.opt, self.trainer.params
            return
        self.module = nn.ModuleList(models)
        self.params = [list(m.parameters()) for m in models]
        self.opt = make_adam([{"params": p, "lr": lr, "weight_decay": wd}
                              for p, lr, wd in zip(self.params, lrs, decays)], device)
        load_run_states(self.opt, self.params, states)

    def set_epoch(self, epoch: int) -> None:
        """Each run's learning rate for epoch ``epoch`` (``schedule.lr_at``)."""
        lrs = [lr_at(c, epoch) for c in self.cfgs]
        if self.stacked:
            self.trainer.set_lrs(lrs)
        else:
            set_lr(self.opt, lrs)

    def lr(self, j: int) -> float:
        """Run j's current learning rate."""
        return float(self.opt.param_groups[j]["lr"])

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(k, B, classes) logits of inputs (k, B, features)."""
        if self.stacked:
            return self.trainer.forward(x)
        return torch.stack([m(xx) for m, xx in zip(self.models, x)])

    def train_epoch(self, x: torch.Tensor, ys: torch.Tensor, orders: torch.Tensor, batch_size: int) -> list[float]:
        """One epoch of every run: run j visits ``x`` in the order ``orders[j]`` with labels
        ``ys[j]``; returns each run's mean mini-batch loss (one synchronisation)."""
        if self.stacked:
            return self.trainer.train_epoch(x, ys, orders, batch_size)
        self.module.train()
        orders = orders.to(x.device, non_blocking=True)
        total = torch.zeros(self.k, device=x.device)
        n_batches = 0
        for start in range(0, orders.shape[1], batch_size):
            idx = orders[:, start:start + batch_size]
            with torch.autocast(x.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
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
        """Run j's checkpoint (model and Adam state, copies) in a lone run's format."""
        model = {key: v.clone() for key, v in self.models[j].state_dict().items()}
        return {"model": model, "optimizer": run_state_dict(self.opt, j, self.params[j])}
