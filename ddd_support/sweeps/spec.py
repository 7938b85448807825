"""Sweeps: a profile plus grid axes over config keys, each point a run directory, run on Dask.

A sweep spec (YAML, or ``--grid``/``--set`` on the command line)::

    name: noise-width          # the sweep's folder under --out
    profile: cpu               # the values every point starts from
    set:                       # overrides for every point
      n_train: 4000
    grid:                      # axes: every combination is a point
      noise_rate: [0.0, 0.1, 0.2, 0.3, 0.4]
      base_width: [8, 32, 128, 512]
      model: [mlp5]            # model and seed are axes too (default: the profile's models, seed 0)
      seed: [0]
    points:                    # optional: explicit points (dicts of config values), crossed with the grid
      - {n_train: 4000, lr: 1.0e-4}

Point ``P`` of model ``M`` and seed ``S`` trains into ``OUT/NAME/P/PROFILE/M/seedS``, where ``P``
names the values that vary (``noise_rate=0.1,base_width=32``; ``base`` when nothing varies). The
run's ``config.json`` is the truth; the name is only its address. Rerunning a sweep resumes its
runs; extending a grid trains only the new points (a complete run is skipped, and each run
directory is locked while it trains, so two sweeps on one folder never train a run twice).
"""

from __future__ import annotations

import itertools
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from ddd_support.config import MODELS, TrainConfig, coerce_value, get_profile, parse_overrides
from ddd_support.errors import ConfigError

#: Axes that name the run inside a point rather than the point.
RUN_AXES: tuple[str, ...] = ("model", "seed")
#: Keys a sweep may not vary or set: they say where and how a run computes, not what.
NOT_SWEPT: frozenset[str] = frozenset({"profile", "progress", "data_root", "device", "threads"})
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class SweepPoint:
    """One run of a sweep: its point name, the values that vary, and its full configuration."""

    point: str
    values: dict[str, Any]
    config: TrainConfig

    @property
    def key(self) -> tuple[str, str, int]:
        return self.point, self.config.model, self.config.seed


@dataclass(frozen=True)
class SweepSpec:
    """What a sweep trains: a profile, fixed overrides, grid axes and explicit points."""

    name: str
    profile: str
    fixed: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    points: tuple[dict[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if not _NAME_PATTERN.match(self.name):
            raise ConfigError(f"sweep name {self.name!r} must be letters, digits, '.', '_' or '-' "
                              "(it names the sweep's folder)")
        get_profile(self.profile)
        for where, keys in (("set", self.fixed), ("grid", self.grid)):
            for key in keys:
                _check_key(key, where)
        for i, point in enumerate(self.points):
            for key in point:
                _check_key(key, f"points[{i}]")
        both = sorted(set(self.fixed) & (set(self.grid) | {k for p in self.points for k in p}))
        if both:
            raise ConfigError(f"{both} appear both in set and as an axis or point; give each key one place")
        for key in self.fixed:
            if key in RUN_AXES:
                raise ConfigError(f"set: {key} is a sweep axis; write it under grid (grid: {{{key}: [...]}})")
        for key, values in self.grid.items():
            if len(values) == 0:
                raise ConfigError(f"grid axis {key} has no values")
            if len(set(map(_value_text, values))) != len(values):
                raise ConfigError(f"grid axis {key} repeats a value: {list(values)}")
        for model in self.grid.get("model", ()):
            if model not in MODELS:
                raise ConfigError(f"grid: unknown model {model!r}; valid models: {', '.join(MODELS)}")

    @property
    def varied_keys(self) -> list[str]:
        """Config keys that differ between points (grid axes and explicit points), in spec order."""
        keys = [k for k in self.grid if k not in RUN_AXES]
        for point in self.points:
            keys += [k for k in point if k not in keys and k not in RUN_AXES]
        return keys

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain data (as in a YAML file)."""
        out: dict[str, Any] = {"name": self.name, "profile": self.profile}
        if self.fixed:
            out["set"] = dict(self.fixed)
        if self.grid:
            out["grid"] = {k: list(v) for k, v in self.grid.items()}
        if self.points:
            out["points"] = [dict(p) for p in self.points]
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "the sweep spec") -> "SweepSpec":
        """A spec from plain data; a ConfigError names anything unknown or malformed."""
        if not isinstance(values, dict):
            raise ConfigError(f"{source} must be a mapping with name, profile and grid or points")
        unknown = sorted(set(values) - {"name", "profile", "set", "grid", "points"})
        if unknown:
            raise ConfigError(f"{source}: unknown entries {unknown}; a spec has name, profile, set, grid, points")
        if "name" not in values or "profile" not in values:
            raise ConfigError(f"{source} needs a name and a profile")
        grid = values.get("grid") or {}
        points = values.get("points") or []
        if not isinstance(grid, dict) or not isinstance(points, list) or not isinstance(values.get("set") or {}, dict):
            raise ConfigError(f"{source}: grid and set are mappings, points is a list of mappings")
        if not grid and not points:
            raise ConfigError(f"{source} has neither grid axes nor points: nothing to sweep")
        if not all(isinstance(p, dict) for p in points):
            raise ConfigError(f"{source}: each entry of points is a mapping of config values")
        as_tuple = lambda v: tuple(v) if isinstance(v, (list, tuple)) else (v,)  # noqa: E731
        return cls(name=str(values["name"]), profile=str(values["profile"]),
                   fixed=_typed(values.get("set") or {}),
                   grid={str(k): tuple(_typed({k: v})[k] for v in as_tuple(vs)) for k, vs in grid.items()},
                   points=tuple(_typed(p) for p in points))


def _typed(values: dict[str, Any]) -> dict[str, Any]:
    """Config values converted to their fields' types, so that ``1e-4`` and ``1.0e-4`` name one point
    (unknown keys are left for the spec's own check to name)."""
    known = set(TrainConfig.__dataclass_fields__)
    return {str(k): coerce_value(k, v) if k in known else v for k, v in values.items()}


def _check_key(key: str, where: str) -> None:
    valid = set(TrainConfig.__dataclass_fields__)
    if key not in valid:
        raise ConfigError(f"{where}: unknown config key {key!r}; valid keys: {', '.join(sorted(valid))}")
    if key in NOT_SWEPT:
        raise ConfigError(f"{where}: {key} cannot be swept or set in a spec (it does not change what a run "
                          "computes); the sweep command sets it")


def load_spec(path: str | os.PathLike) -> SweepSpec:
    """Read a YAML (or JSON) sweep spec; errors name the file."""
    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"sweep spec {path} does not exist") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"sweep spec {path} is not valid YAML{where}: {what}; fix it there") from None
    return SweepSpec.from_dict(values, source=f"sweep spec {path}")


def spec_from_arguments(name: str, profile: str, grid: Iterable[str], overrides: Iterable[str]) -> SweepSpec:
    """A spec from ``--grid key=v1,v2`` and ``--set key=value`` strings (lists as ``64-64-64``)."""
    axes: dict[str, tuple[Any, ...]] = {}
    for item in grid:
        if "=" not in item:
            raise ConfigError(f"--grid {item!r} is not of the form key=v1,v2,...")
        key, raw = (part.strip() for part in item.split("=", 1))
        _check_key(key, "--grid")
        texts = [v.strip() for v in raw.split(",") if v.strip()]
        if key == "model":
            axes[key] = tuple(texts)
        elif key == "seed":
            if not all(_is_int(v) for v in texts):
                raise ConfigError(f"--grid seed={raw}: seeds are integers")
            axes[key] = tuple(int(v) for v in texts)
        elif key == "hidden_widths":
            axes[key] = tuple(parse_overrides([f"{key}={v.replace('-', ',')}"])[key] for v in texts)
        else:
            axes[key] = tuple(parse_overrides([f"{key}={v}"])[key] for v in texts)
    if not axes:
        raise ConfigError("give a sweep spec file or at least one --grid key=v1,v2,...")
    return SweepSpec(name=name, profile=profile, fixed=sweep_overrides(overrides), grid=axes)


def sweep_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``--set`` values of a sweep: config values, but model and seed are axes and profile is the spec's."""
    items = list(items)
    for item in items:
        key = item.split("=", 1)[0].strip()
        if key in RUN_AXES:
            raise ConfigError(f"{key} is a sweep axis: use --grid {key}=... (or grid: in the spec), not --set")
        if key == "profile":
            raise ConfigError("the profile is the spec's (or --profile), not --set profile=...")
    return parse_overrides(items)


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def _value_text(value: Any) -> str:
    """How a value appears in a point name: 0.1, 256, 64-64-64 for a list."""
    if isinstance(value, (list, tuple)):
        return "-".join(_value_text(v) for v in value)
    return str(value)


def point_name(values: dict[str, Any]) -> str:
    """``key=value,...`` of the varied values, in order (``base`` when nothing varies)."""
    return ",".join(f"{k}={_value_text(v)}" for k, v in values.items()) or "base"


def expand(spec: SweepSpec, threads: int | None = 1) -> list[SweepPoint]:
    """Every run of the sweep, in a stable order: points x models x seeds."""
    profile = get_profile(spec.profile)
    axes = {k: v for k, v in spec.grid.items() if k not in RUN_AXES}
    models = list(spec.grid.get("model", profile.models))
    seeds = [int(s) for s in spec.grid.get("seed", (0,))]
    if any(s < 0 for s in seeds):
        raise ConfigError(f"grid: seeds must be >= 0, got {seeds}")
    explicit = list(spec.points) or [{}]
    varied = spec.varied_keys
    runs: list[SweepPoint] = []
    seen: dict[str, dict[str, Any]] = {}
    for extra in explicit:
        for combo in itertools.product(*axes.values()):
            values = {**dict(zip(axes, combo)), **{k: v for k, v in extra.items() if k not in RUN_AXES}}
            ordered = {k: values[k] for k in varied if k in values}
            name = point_name(ordered)
            if name in seen and seen[name] != ordered:
                raise ConfigError(f"two points of sweep {spec.name} share the name {name}")
            seen[name] = ordered
            point_models = [extra["model"]] if "model" in extra else models
            point_seeds = [int(extra["seed"])] if "seed" in extra else seeds
            for model in point_models:
                for seed in point_seeds:
                    overrides = {**spec.fixed, **values, "progress": False}
                    if threads is not None:
                        overrides["threads"] = threads
                    cfg = profile.config(model, seed, overrides)
                    runs.append(SweepPoint(name, ordered, cfg))
    seen_configs: dict[str, SweepPoint] = {}
    for r in runs:
        identity = json.dumps(r.config.to_dict(), sort_keys=True)
        if identity in seen_configs:
            other = seen_configs[identity]
            raise ConfigError(f"sweep {spec.name}: points {other.point} and {r.point} are the same run "
                              f"({r.config.model} seed {r.config.seed}); make its points differ")
        seen_configs[identity] = r
    return runs


def run_root(out: str | os.PathLike, spec: SweepSpec, point: str) -> Path:
    """The output root (``train``'s ``out``) of one point: ``OUT/NAME/POINT``."""
    return Path(out) / spec.name / point


def sweep_dir(out: str | os.PathLike, spec: SweepSpec) -> Path:
    """The sweep's folder: its spec, its tables and its points."""
    return Path(out) / spec.name


def sweep_spec_with(spec: SweepSpec, grid: Iterable[str], overrides: Iterable[str]) -> SweepSpec:
    """``spec`` with command-line ``--grid`` axes (new axes, or replacing the axis of the same key) and
    ``--set`` values (new values, or replacing the spec's ``set`` value of the same key)."""
    grid, overrides = list(grid), list(overrides)
    if not grid and not overrides:
        return spec
    extra = spec_from_arguments(spec.name, spec.profile, grid, []) if grid else None
    return SweepSpec(name=spec.name, profile=spec.profile, fixed={**spec.fixed, **sweep_overrides(overrides)},
                     grid={**spec.grid, **(extra.grid if extra else {})}, points=spec.points)
