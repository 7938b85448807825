"""Training configuration, named profiles and command-line style overrides."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import typing
from dataclasses import dataclass, field, fields
from typing import Any

from ddd_support.errors import ConfigError

#: Number of hidden layers of each named model.
MODEL_DEPTHS: dict[str, int] = {"mlp3": 2, "mlp5": 4, "mlp7": 6}
#: Width of each named model's hidden layers, as a multiple of ``base_width``.
MODEL_WIDTH_FACTORS: dict[str, int] = {"mlp3": 1, "mlp5": 2, "mlp7": 4}
MODELS: tuple[str, ...] = tuple(MODEL_DEPTHS)
#: Learning-rate schedules (``ddd_support.train.schedule``).
LR_SCHEDULES: tuple[str, ...] = ("constant", "cosine")

#: Keys that may differ when an existing run directory is resumed: they change
#: where or how fast a run computes, or how long it goes on, not what it computes.
RESUME_INSENSITIVE_KEYS: frozenset[str] = frozenset(
    {"epochs", "device", "data_root", "threads", "eval_batch_size", "checkpoint_every", "progress"}
)

#: Keys added after run directories were first recorded, with the value every older run had:
#: ``to_dict`` leaves such a key out while it holds that value, so older run directories (and
#: the committed reference) still read as the same configuration.
LATER_KEYS_DEFAULTS: dict[str, Any] = {"lr_schedule": "constant"}

#: Keys that name a run (its directory): chosen with --profile, --model and --seed, not --set.
RUN_KEYS: dict[str, str] = {"profile": "--profile", "model": "--model", "seed": "--seed"}
#: Devices a config may name: auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps.
DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
#: Seeds are below 2**32: numpy's seeding takes them, and derived seeds (``order_seed`` x 1,000,003
#: + epoch) stay within torch's 64-bit generator seeds.
MAX_SEED = 2**32 - 1
#: The most weights a model may have (2**31: 8 GiB of float32 weights, three times that with Adam's state).
MAX_PARAMETERS = 2**31
#: Pixels of one CIFAR-10 image (the input width of every model).
INPUT_SIZE = 32 * 32 * 3


def model_widths(model: str, base_width: int, hidden_widths: tuple[int, ...] | list[int] | None = None
                 ) -> tuple[int, ...]:
    """Hidden-layer widths of a named model: ``hidden_widths`` if given, else base_width x its factor."""
    if hidden_widths:
        return tuple(int(w) for w in hidden_widths)
    return (base_width * MODEL_WIDTH_FACTORS[model],) * MODEL_DEPTHS[model]


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines one training run (one model, one seed)."""

    profile: str = "custom"
    model: str = "mlp3"
    seed: int = 0
    noise_seed: int | None = None
    order_seed: int | None = None
    subset_seed: int = 0
    n_train: int | None = None
    n_test: int | None = None
    noise_rate: float = 0.3
    noise_exact_per_class: bool = False
    base_width: int = 512
    hidden_widths: tuple[int, ...] | None = None
    epochs: int = 300
    batch_size: int = 128
    lr: float = 1e-4
    lr_schedule: str = "constant"
    weight_decay: float = 0.0
    precision: str = "fp32"
    eval_batch_size: int = 4096
    snapshot_dense_until: int = 10
    snapshot_per_decade: int = 10
    probe_per_class: int = 20
    top_k: int = 8
    checkpoint_every: int = 5
    device: str = "auto"
    threads: int | None = None
    data_source: str = "auto"
    data_root: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        validate(self)

    @property
    def widths(self) -> tuple[int, ...]:
        """Hidden-layer widths of this run's model."""
        return model_widths(self.model, self.base_width, self.hidden_widths)

    @property
    def resolved_noise_seed(self) -> int:
        return self.seed if self.noise_seed is None else self.noise_seed

    @property
    def resolved_order_seed(self) -> int:
        return self.seed if self.order_seed is None else self.order_seed

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dictionary (tuples become lists)."""
        out = dataclasses.asdict(self)
        for key, default in LATER_KEYS_DEFAULTS.items():
            if out[key] == default:
                del out[key]
        if out["hidden_widths"] is not None:
            out["hidden_widths"] = list(out["hidden_widths"])
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}; valid keys: {sorted(known)}")
        return cls(**{k: _coerce_field(k, v) for k, v in values.items()})


def validate(cfg: TrainConfig) -> None:
    """Raise ConfigError with a clear message for any invalid value."""
    if cfg.model not in MODEL_DEPTHS:
        raise ConfigError(f"unknown model {cfg.model!r}; valid models: {', '.join(MODELS)}")
    if not (0.0 <= cfg.noise_rate < 1.0) or math.isnan(cfg.noise_rate):
        raise ConfigError(f"noise_rate must be in [0, 1), got {cfg.noise_rate}")
    for name in ("epochs", "batch_size", "base_width", "eval_batch_size", "probe_per_class",
                 "top_k", "checkpoint_every", "snapshot_per_decade"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"{name} must be a positive integer, got {getattr(cfg, name)}")
    for name in ("seed", "noise_seed", "order_seed", "subset_seed"):
        value = getattr(cfg, name)
        if value is not None and value < 0:
            raise ConfigError(f"{name} must be a non-negative integer, got {value}")
        if value is not None and value > MAX_SEED:
            raise ConfigError(f"{name} must be at most {MAX_SEED} (2**32 - 1), got {value}")
    if cfg.threads is not None and cfg.threads < 1:
        raise ConfigError(f"threads must be at least 1 (or None: torch's default), got {cfg.threads}")
    if not isinstance(cfg.device, str) or not DEVICE_PATTERN.fullmatch(cfg.device):
        raise ConfigError(f"device must be auto, cpu, cuda, cuda:N or mps; got {cfg.device!r}")
    if cfg.snapshot_dense_until < 0:
        raise ConfigError(f"snapshot_dense_until must be >= 0, got {cfg.snapshot_dense_until}")
    for name in ("n_train", "n_test"):
        value = getattr(cfg, name)
        if value is not None and value < 10:
            raise ConfigError(f"{name} must be at least 10 (one image per class) or None, got {value}")
    if cfg.hidden_widths is not None and (len(cfg.hidden_widths) == 0 or min(cfg.hidden_widths) < 1):
        raise ConfigError(f"hidden_widths must be a non-empty list of positive ints, got {cfg.hidden_widths}")
    if not (0 < cfg.lr < math.inf):
        raise ConfigError(f"lr must be a positive finite number, got {cfg.lr}")
    if not (0 <= cfg.weight_decay < math.inf):
        raise ConfigError(f"weight_decay must be a finite number >= 0, got {cfg.weight_decay}")
    widths = model_widths(cfg.model, cfg.base_width, cfg.hidden_widths)
    n_params = sum(a * b + b for a, b in zip((INPUT_SIZE, *widths), (*widths, 10)))
    if n_params > MAX_PARAMETERS:
        raise ConfigError(f"{cfg.model} with widths {list(widths)} has {n_params:.3g} weights, more than the "
                          f"{MAX_PARAMETERS:.3g} this package trains; use a smaller base_width or hidden_widths")
    if cfg.lr_schedule not in LR_SCHEDULES:
        raise ConfigError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}; got {cfg.lr_schedule!r}")
    if cfg.precision not in ("fp32", "tf32", "bf16"):
        raise ConfigError(f"precision must be one of fp32, tf32, bf16; got {cfg.precision!r}")
    if cfg.data_source not in ("auto", "imagefolder", "torchvision"):
        raise ConfigError(f"data_source must be auto, imagefolder or torchvision; got {cfg.data_source!r}")


@dataclass(frozen=True)
class Profile:
    """A named parameter set: which models to train and the config values to use."""

    name: str
    description: str
    models: tuple[str, ...]
    values: dict[str, Any] = field(default_factory=dict)

    def config(self, model: str, seed: int = 0, overrides: dict[str, Any] | None = None) -> TrainConfig:
        """The resolved configuration of one model and seed of this profile."""
        values = {**self.values, **(overrides or {})}
        return TrainConfig.from_dict({**values, "profile": self.name, "model": model, "seed": seed})


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        description="Minutes on two CPU cores: tiny subset, narrow models. Exercises every code path.",
        models=MODELS,
        values=dict(n_train=2000, n_test=1000, base_width=64, epochs=40, batch_size=64, lr=1e-3,
                    snapshot_dense_until=4, snapshot_per_decade=6, probe_per_class=8, top_k=4),
    ),
    "cpu": Profile(
        name="cpu",
        description="A CPU run (20,000 training images, widths 128/256/512, Adam lr 1e-4, batch 256, "
                    "120 epochs): the configuration search's pick, see the book's appendix.",
        models=MODELS,
        values=dict(n_train=20000, n_test=2000, base_width=128, epochs=120, batch_size=256, lr=1e-4,
                    snapshot_dense_until=10, snapshot_per_decade=10, probe_per_class=20),
    ),
    "paper": Profile(
        name="paper",
        description="Full CIFAR-10, 30% noise, widths 512/1024/2048, Adam lr 1e-4, batch 128: a GPU job.",
        models=MODELS,
        values=dict(n_train=None, n_test=None, base_width=512, epochs=300, batch_size=128, lr=1e-4,
                    snapshot_dense_until=10, snapshot_per_decade=10, probe_per_class=50),
    ),
    "paper_cosine": Profile(
        name="paper_cosine",
        description="The paper profile with the learning rate decayed from 1e-4 to 0 over the run "
                    "(cosine, per epoch): a GPU job.",
        models=MODELS,
        values=dict(n_train=None, n_test=None, base_width=512, epochs=300, batch_size=128, lr=1e-4,
                    lr_schedule="cosine", snapshot_dense_until=10, snapshot_per_decade=10,
                    probe_per_class=50),
    ),
    "cpu_mlp7": Profile(
        name="cpu_mlp7",
        description="MLP7 only (width 512) on 5,000 training images, batch 64, Adam lr 1e-4, 150 epochs: "
                    "about 5 minutes per seed on one core; the recipe of the scale map (chapter 08) in "
                    "which the large-activation claims can be tested.",
        models=("mlp7",),
        values=dict(n_train=5000, n_test=2000, base_width=128, epochs=150, batch_size=64, lr=1e-4,
                    snapshot_dense_until=10, snapshot_per_decade=10, probe_per_class=20),
    ),
}


def resume_insensitive_keys(cfg: TrainConfig) -> frozenset[str]:
    """``RESUME_INSENSITIVE_KEYS`` for ``cfg``: without ``epochs`` when its schedule depends on it."""
    if cfg.lr_schedule == "constant":
        return RESUME_INSENSITIVE_KEYS
    return RESUME_INSENSITIVE_KEYS - {"epochs"}


def get_profile(name: str) -> Profile:
    """Look up a profile by name, with an error listing the valid ones."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(f"unknown profile {name!r}; valid profiles: {', '.join(PROFILES)}") from None


def parse_overrides(items: list[str] | None, allow_run_keys: bool = False) -> dict[str, Any]:
    """Parse ``key=value`` strings into typed config values (JSON or plain text values).

    The keys that name a run (``RUN_KEYS``) are refused unless ``allow_run_keys``: a profile
    sets them from its own options, and would silently ignore them here.
    """
    out: dict[str, Any] = {}
    valid = {f.name for f in fields(TrainConfig)}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if key not in valid:
            raise ConfigError(f"unknown config key {key!r}; valid keys: {', '.join(sorted(valid))}")
        if key in RUN_KEYS and not allow_run_keys:
            raise ConfigError(f"{key} is set with {RUN_KEYS[key]}, not --set {key}=...")
        out[key] = _coerce_field(key, _parse_value(raw.strip()))
    return out


def _parse_value(raw: str) -> Any:
    if raw.lower() in ("none", "null"):
        return None
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        if "," in raw:
            return [_parse_value(part) for part in raw.split(",")]
        return raw


def coerce_value(name: str, value: Any) -> Any:
    """``value`` as TrainConfig field ``name`` holds it (``"1e-4"`` -> 0.0001, ``8.0`` -> 8, a list -> tuple)."""
    return _coerce_field(name, value)


def _coerce_field(name: str, value: Any) -> Any:
    """Convert ``value`` to the declared type of TrainConfig field ``name``."""
    hint = typing.get_type_hints(TrainConfig)[name]
    if value is None:
        if type(None) in typing.get_args(hint):
            return None
        raise ConfigError(f"{name} may not be None")
    base = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    target = base[0]
    try:
        if typing.get_origin(target) is tuple:
            seq = value if isinstance(value, (list, tuple)) else [value]
            return tuple(int(v) for v in seq)
        if target is bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(value)
                return value.lower() in ("true", "1")
            return bool(value)
        if target is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if target is float:
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: cannot read {value!r} as {target}") from None


def snapshot_epochs(epochs: int, dense_until: int, per_decade: int) -> list[int]:
    """Epochs at which activation snapshots are taken.

    Every epoch from 0 (initialisation) to ``dense_until``, then ``per_decade``
    log-spaced epochs per factor of ten, and always the last epoch.
    """
    chosen = set(range(0, min(dense_until, epochs) + 1))
    k = 0
    while True:
        e = int(round(10 ** (k / per_decade)))
        if e > epochs:
            break
        chosen.add(e)
        k += 1
    chosen.add(epochs)
    return sorted(chosen)
