"""Train every model and seed of a profile: the function behind the CLI and the notebooks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

from . import data as data_mod
from .config import MODELS, get_profile
from .errors import ConfigError
from .training import train


def train_profile(profile: str, models: Iterable[str] | None = None, seeds: Iterable[int] = (0,),
                  overrides: dict[str, Any] | None = None, out: str | os.PathLike = "runs") -> list[Path]:
    """Train (or resume, or skip if complete) each model x seed of ``profile``; returns run dirs."""
    prof = get_profile(profile)
    models = list(models) if models else list(prof.models)
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise ConfigError(f"unknown model(s) {unknown}; valid models: {', '.join(MODELS)}")
    configs = [prof.config(m, seed, overrides) for seed in seeds for m in models]
    arrays = None
    run_dirs = []
    for cfg in configs:
        if arrays is None and not _is_complete(cfg, out):
            arrays = data_mod.load_cifar10(cfg.data_root, cfg.data_source, progress=cfg.progress)
        run_dirs.append(train(cfg, out, arrays))
    return run_dirs


def _is_complete(cfg, out) -> bool:
    from .recording import read_json, run_directory

    path = run_directory(out, cfg.profile, cfg.model, cfg.seed) / "config.json"
    if not path.exists():
        return False
    state = read_json(path)
    return state.get("status") == "complete" and state.get("epochs_done", -1) >= cfg.epochs
