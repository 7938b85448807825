"""Train every model and seed of a profile: the function behind the CLI and the notebooks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterable

from . import data as data_mod
from .config import MODELS, TrainConfig, get_profile
from .errors import ConfigError, RunDirError
from .recording import read_json, run_directory
from .reference import REFERENCE_INDEX, is_reference_root
from .rundir import state_is_complete
from .training import train


def train_profile(profile: str, models: Iterable[str] | None = None, seeds: Iterable[int] = (0,),
                  overrides: dict[str, Any] | None = None, out: str | os.PathLike = "runs",
                  batched_seeds: bool = False) -> list[Path]:
    """Train (or resume, or skip if complete) each model x seed of ``profile``; returns run dirs.

    With ``batched_seeds`` the seeds of each model train together in one batched computation
    (``ddd_support.multiseed``), with the same results as separate runs.
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
        from .multiseed import train_seeds

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


def runs_for(profile: str, models: Iterable[str] | None = None, seeds: Iterable[int] = (0,),
             overrides: dict[str, Any] | None = None, run_root: str | os.PathLike = "runs") -> list[Path]:
    """The run directories the analysis chapters read: trained (or resumed) under ``run_root``,
    or, if ``run_root`` is a reference root, found there (never trained into it)."""
    if not is_reference_root(run_root):
        return train_profile(profile, models, seeds, overrides, out=run_root)
    if overrides:
        raise ConfigError(f"{run_root} holds reference runs, which cannot be changed by overrides "
                          f"{sorted(overrides)}; train your own runs and point run_root at them")
    wanted = [(m, s) for m in (list(models) if models else get_profile(profile).models) for s in seeds]
    dirs = [run_directory(run_root, profile, m, s) for m, s in wanted]
    missing = [f"{m} seed {s}" for (m, s), d in zip(wanted, dirs) if not (d / "config.json").exists()]
    if missing:
        index = read_json(Path(run_root) / REFERENCE_INDEX).get("profiles", {})
        have = {p: f"{', '.join(v['models'])} x seeds {v['seeds']}" for p, v in index.items()}
        raise RunDirError(f"the reference in {run_root} has no {profile} run of {', '.join(missing)} "
                          f"(it holds: {have}); train them with `python -m ddd_support train --profile "
                          f"{profile}` and set run_root to your runs folder")
    return dirs


def reference_runs(profile: str, seeds: Iterable[int], run_root: str | os.PathLike | None = None) -> list[Path]:
    """Run directories of the committed reference (``run_root``, default the project's ``reference/``);
    an error, never training, if the folder is not a reference root."""
    from .reference import REFERENCE_ROOT

    root = Path(run_root) if run_root is not None else REFERENCE_ROOT
    if not is_reference_root(root):
        raise RunDirError(f"{root} holds no reference runs ({REFERENCE_INDEX} is missing); write them with "
                          "`python -m ddd_support export-reference RUN_DIR... --dest reference`")
    models = read_json(root / REFERENCE_INDEX).get("profiles", {}).get(profile, {}).get("models")
    return runs_for(profile, models, seeds, None, root)
