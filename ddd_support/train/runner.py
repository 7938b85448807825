"""Train every model and seed of a profile, or a group of runs: the function behind the CLI and sweeps."""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any, Callable, Iterable

from ddd_support.config import MODELS, TrainConfig, get_profile, parse_overrides
from ddd_support.data import cifar as data_mod
from ddd_support.errors import ConfigError
from ddd_support.files import read_json
from ddd_support.runs.recorder import state_is_complete
from ddd_support.runs.schema import run_directory
from ddd_support.train.driver import PER_RUN_KEYS, train, train_runs
from ddd_support.runs.schema import CONFIG_FILE

#: Config keys ``--vary`` may give several values (a group trains together, so not its shape).
VARIABLE_KEYS = PER_RUN_KEYS - {"seed", "progress"}


def train_profile(profile: str, models: Iterable[str] | None = None, seeds: Iterable[int] = (0,),
                  overrides: dict[str, Any] | None = None, out: str | os.PathLike = "runs",
                  batched_seeds: bool = False, vary: dict[str, list] | None = None) -> list[Path]:
    """Train (or resume, or skip if complete) each model x seed of ``profile``; returns run dirs.

    With ``batched_seeds`` the seeds of each model train together in one batched computation
    (the same results as separate runs). ``vary`` ({key: values} of ``VARIABLE_KEYS``): every
    combination of values is trained too, each under ``out/<variant_name>``, and a model's
    variants and seeds train together.
    """
    prof = get_profile(profile)
    models = list(models) if models else list(prof.models)
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise ConfigError(f"unknown model(s) {unknown}; valid models: {', '.join(MODELS)}")
    groups = [variant_configs(profile, m, list(seeds), overrides or {}, vary or {}, out) for m in models]
    pending = [c for cfgs, outs in groups for c, o in zip(cfgs, outs) if not is_complete(c, o)]
    arrays = None
    if pending:
        first = pending[0]
        arrays = data_mod.load_cifar10(first.data_root, first.data_source, progress=first.progress)
    return [d for cfgs, outs in groups for d in train_group(cfgs, outs, lambda: arrays, batched_seeds or bool(vary))]


def train_group(cfgs: list[TrainConfig], outs: list[str | os.PathLike],
                load_arrays: Callable[[], data_mod.CifarArrays], batched: bool) -> list[Path]:
    """Train (or resume, or skip) runs into their output roots, together if ``batched``;
    ``load_arrays`` is called only if some run is not complete."""
    if all(is_complete(cfg, out) for cfg, out in zip(cfgs, outs)):
        return [train(cfg, out) for cfg, out in zip(cfgs, outs)]   # each finds its run complete
    arrays = load_arrays()
    if batched:
        return train_runs(cfgs, outs, arrays)
    return [train(cfg, out, arrays) for cfg, out in zip(cfgs, outs)]


def is_complete(cfg: TrainConfig, out: str | os.PathLike) -> bool:
    """True if the run directory of ``cfg`` under ``out`` holds a complete run of its epochs.

    Read without the run directory's lock: a hint (e.g. whether to load the data set at all);
    ``driver.train_runs`` checks again once it holds the lock, so a run another process is
    finishing is not trained twice.
    """
    path = run_directory(out, cfg.profile, cfg.model, cfg.seed) / CONFIG_FILE
    return path.exists() and state_is_complete(read_json(path), cfg.epochs)


def variant_name(values: dict) -> str:
    """The folder of one combination of varied values, e.g. ``noise_rate0.1`` or ``lr0.001_noise_rate0.2``."""
    return "_".join(f"{k}{v}" for k, v in values.items())


def variant_configs(profile: str, model: str, seeds: list[int], overrides: dict, vary: dict[str, list],
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
    """``KEY=V1,V2,...`` items into {key: [typed values]}; only ``VARIABLE_KEYS`` may vary."""
    vary: dict[str, list] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--vary {item!r} is not of the form KEY=V1,V2,...")
        key, raw = (s.strip() for s in item.split("=", 1))
        if key not in VARIABLE_KEYS:
            raise ConfigError(f"--vary {key}: only {', '.join(sorted(VARIABLE_KEYS))} may vary within one "
                              "batch (use --seed for seeds, and the sweep command for anything else)")
        vary[key] = [parse_overrides([f"{key}={v}"])[key] for v in raw.split(",") if v.strip()]
    return vary
