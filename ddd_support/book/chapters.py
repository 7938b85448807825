"""Which run directories a chapter reads: trained for it under a runs folder, or the committed reference."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

from ddd_support.book.reference import REFERENCE_INDEX, REFERENCE_ROOT, is_reference_root
from ddd_support.config import get_profile
from ddd_support.errors import ConfigError, RunDirError
from ddd_support.files import read_json
from ddd_support.runs.schema import CONFIG_FILE, run_directory
from ddd_support.train.runner import is_complete, train_profile


def runs_for(profile: str, models: Iterable[str] | None = None, seeds: Iterable[int] = (0,),
             overrides: dict[str, Any] | None = None, run_root: str | os.PathLike = "runs") -> list[Path]:
    """The run directories the analysis chapters read: trained (or resumed) under ``run_root``,
    or, if ``run_root`` is a reference root, found there (never trained into it). Runs that must
    be trained first are named on stdout before training starts."""
    seeds = list(seeds)
    if not is_reference_root(run_root):
        prof = get_profile(profile)
        pending = [f"{m} seed {s}" for m in (list(models) if models else prof.models) for s in seeds
                   if not is_complete(prof.config(m, s, overrides), run_root)]
        if pending:
            print(f"{run_root} holds no finished {profile} run of {', '.join(pending)}: training them now "
                  "(chapter 02 trains them too; this takes a while)", flush=True)
        return train_profile(profile, models, seeds, overrides, out=run_root)
    if overrides:
        raise ConfigError(f"{run_root} holds reference runs, which cannot be changed by overrides "
                          f"{sorted(overrides)}; train your own runs and point run_root at them")
    wanted = [(m, s) for m in (list(models) if models else get_profile(profile).models) for s in seeds]
    dirs = [run_directory(run_root, profile, m, s) for m, s in wanted]
    missing = [f"{m} seed {s}" for (m, s), d in zip(wanted, dirs) if not (d / CONFIG_FILE).exists()]
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
    root = Path(run_root) if run_root is not None else REFERENCE_ROOT
    if not is_reference_root(root):
        raise RunDirError(f"{root} holds no reference runs ({REFERENCE_INDEX} is missing); write them with "
                          "`python -m ddd_support export-reference RUN_DIR... --dest reference`")
    models = read_json(root / REFERENCE_INDEX).get("profiles", {}).get(profile, {}).get("models")
    return runs_for(profile, models, seeds, None, root)
