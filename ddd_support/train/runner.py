"""Train every model and seed of a profile, or a group of runs: the function behind the CLI and sweeps."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterable

from ddd_support.data import cifar as data_mod
from ddd_support.config import MODELS, TrainConfig, get_profile
from ddd_support.errors import ConfigError
from ddd_support.files import read_json
from ddd_support.runs.schema import run_directory
from ddd_support.runs.recorder import state_is_complete
from ddd_support.train.driver import train


def train_profile(profile: str, models: Iterable[str] | None = None, seeds: Iterable[int] = (0,),
                  overrides: dict[str, Any] | None = None, out: str | os.PathLike = "runs",
                  batched_seeds: bool = False) -> list[Path]:
    """Train (or resume, or skip if complete) each model x seed of ``profile``; returns run dirs.

    With ``batched_seeds`` the seeds of each model train together in one batched computation
    (``ddd_support.train.batch``), with the same results as separate runs.
    """
    prof = get_profile(profile)
    models = list(models) if models else list(prof.models)
    seeds = list(seeds)
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise ConfigError(f"unknown model(s) {unknown}; valid models: {', '.join(MODELS)}")
    groups = [[prof.config(m, seed, overrides) for seed in seeds] for m in models]
    pending = [cfg for group in groups for cfg in group if not is_complete(cfg, out)]
    arrays = None
    if pending:
        first = pending[0]
        arrays = data_mod.load_cifar10(first.data_root, first.data_source, progress=first.progress)
    return [d for group in groups for d in train_group(group, [out] * len(group), lambda: arrays, batched_seeds)]


def train_group(cfgs: list[TrainConfig], outs: list[str | os.PathLike],
                load_arrays: Callable[[], data_mod.CifarArrays], batched: bool) -> list[Path]:
    """Train (or resume, or skip) runs into their output roots, together (``multiseed``) if ``batched``;
    ``load_arrays`` is called only if some run is not complete."""
    if all(is_complete(cfg, out) for cfg, out in zip(cfgs, outs)):
        return [train(cfg, out) for cfg, out in zip(cfgs, outs)]   # each finds its run complete
    arrays = load_arrays()
    if batched and len(cfgs) > 1:
        from ddd_support.train.batch import train_seeds

        return train_seeds(cfgs, outs, arrays)
    return [train(cfg, out, arrays) for cfg, out in zip(cfgs, outs)]


def is_complete(cfg: TrainConfig, out: str | os.PathLike) -> bool:
    """True if the run directory of ``cfg`` under ``out`` holds a complete run of its epochs.

    Read without the run directory's lock: a hint (e.g. whether to load the data set at all);
    ``training.train`` checks again once it holds the lock, so a run another process is
    finishing is not trained twice.
    """
    path = run_directory(out, cfg.profile, cfg.model, cfg.seed) / "config.json"
    return path.exists() and state_is_complete(read_json(path), cfg.epochs)
