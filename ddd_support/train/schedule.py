"""Learning-rate schedules: the learning rate of an epoch as a function of the config and the epoch.

``constant`` (the default) keeps ``cfg.lr``. ``cosine`` decays it per epoch from ``cfg.lr`` to
zero over ``cfg.epochs`` epochs, as ``torch.optim.lr_scheduler.CosineAnnealingLR`` stepped once
per epoch with ``T_max=epochs`` and ``eta_min=0``:

    lr(e) = lr * (1 + cos(pi * (e - 1) / epochs)) / 2,    e = 1, ..., epochs

so epoch 1 trains with ``lr`` and the rate would reach 0 after the last epoch. The rate is a
function of (config, epoch) alone, so a resumed run needs no scheduler state; a cosine run's
schedule depends on ``epochs``, which is why such a run cannot be extended
(``config.resume_insensitive_keys``).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from ddd_support.config import LR_SCHEDULES, TrainConfig
from ddd_support.errors import ConfigError


def lr_at(cfg: TrainConfig, epoch: int) -> float:
    """The learning rate of (1-based) epoch ``epoch`` under ``cfg.lr_schedule``."""
    if epoch < 1:
        raise ValueError(f"epochs count from 1, got {epoch}")
    if cfg.lr_schedule == "constant":
        return cfg.lr
    if cfg.lr_schedule == "cosine":
        return cfg.lr * (1.0 + math.cos(math.pi * (epoch - 1) / cfg.epochs)) / 2.0
    raise ConfigError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}; got {cfg.lr_schedule!r}")


def set_group_lr(group: dict, lr: float) -> None:
    """Set one parameter group's learning rate; a tensor rate (CUDA graphs) is changed in place."""
    if isinstance(group["lr"], torch.Tensor):
        group["lr"].fill_(lr)
    else:
        group["lr"] = lr


def set_lr(optimizer: torch.optim.Optimizer, lr: float | Sequence[float]) -> None:
    """Set the learning rate of every parameter group: one value for all, or one per group."""
    groups = optimizer.param_groups
    values = [lr] * len(groups) if isinstance(lr, (int, float)) else list(lr)
    if len(values) != len(groups):
        raise ValueError(f"{len(values)} learning rates for {len(groups)} parameter groups")
    for group, value in zip(groups, values):
        set_group_lr(group, float(value))
