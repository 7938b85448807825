"""The training driver: any number of runs of one shape, one epoch loop, recorded as they go.

``train_runs(cfgs, out)`` trains runs that differ only in ``PER_RUN_KEYS`` (seeds, noise,
learning rate and its schedule, weight decay) together, each into its own run directory;
``train(cfg)`` is ``train_runs([cfg])``. Each run keeps its own initialisation, label noise and
batch order, so a run's result does not depend on the company it trains in. Per epoch: the
engine (``engine.Engine``: per-model on the CPU, bit-identical to a run alone; stacked, a CUDA
graph on CUDA) steps every run, then each run is checked for divergence, evaluated on the four
splits, snapshotted when scheduled and recorded through its ``runs.recorder.RunRecorder``
(lock, validation, resume, files). ``train_seconds`` of each run is its share (1/k) of the
epoch's wall time, so sums over runs stay wall time.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ddd_support.config import TrainConfig
from ddd_support.data import cifar as data_mod
from ddd_support.errors import ConfigError, TrainingDiverged
from ddd_support.models import MLP, model_from_config
from ddd_support.runs.recorder import RunRecorder
from ddd_support.runs.schema import run_directory
from ddd_support.train.engine import Engine
from ddd_support.train.evaluation import four_way_evaluation
from ddd_support.train.prepare import PreparedData, check_subset_sizes, prepare_data, take_snapshot

#: A run has diverged when an epoch's mean training loss exceeds this multiple of its initial loss
#: (the largest of the epoch-0 clean, noisy and test losses, and at least ln 10, chance level on
#: ten classes): a healthy run's training loss stays below its initial value.
DIVERGENCE_FACTOR = 10.0
#: Config keys whose values may differ between the runs trained together (the rest must be equal).
PER_RUN_KEYS = frozenset({"seed", "noise_seed", "order_seed", "noise_rate", "noise_exact_per_class",
                          "lr", "lr_schedule", "weight_decay", "progress"})


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then CPU; a named device that is not there is a ConfigError."""
    if name != "auto":
        device = torch.device(name)
        mps = getattr(torch.backends, "mps", None)
        if device.type == "cuda" and not (torch.cuda.is_available()
                                          and (device.index or 0) < torch.cuda.device_count()):
            raise ConfigError(f"device={name}, but this machine has {torch.cuda.device_count()} CUDA device(s); "
                              "use device=auto or device=cpu")
        if device.type == "mps" and not (mps is not None and mps.is_available()):
            raise ConfigError(f"device={name}, but Apple MPS is not available here; use device=auto or device=cpu")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def batch_order(n: int, order_seed: int, epoch: int) -> torch.Tensor:
    """The permutation of epoch ``epoch``: a function of (seed, epoch) alone, so resume needs no RNG state."""
    gen = torch.Generator().manual_seed(order_seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=gen)


def apply_runtime_settings(cfg: TrainConfig) -> None:
    """Thread count and TF32 matmuls as ``cfg`` asks (process-wide torch settings)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.backends.cuda.matmul.allow_tf32 = cfg.precision == "tf32"


def check_batchable(cfgs: list[TrainConfig], outs: Sequence[str | os.PathLike]) -> None:
    """Raise ConfigError unless the configs differ only in ``PER_RUN_KEYS`` and each run has its
    own run directory (``outs``: the output root of each config)."""
    if not cfgs:
        raise ConfigError("train_runs needs at least one config")
    if len(outs) != len(cfgs):
        raise ConfigError(f"{len(outs)} output roots for {len(cfgs)} configs")
    first = cfgs[0].to_dict()
    for cfg in cfgs[1:]:
        values = cfg.to_dict()
        diff = sorted(k for k in set(values) | set(first)
                      if k not in PER_RUN_KEYS and values.get(k) != first.get(k))
        if diff:
            raise ConfigError(f"runs trained together may differ only in {', '.join(sorted(PER_RUN_KEYS))}; "
                              f"{diff} differ")
    dirs = [run_directory(o, c.profile, c.model, c.seed) for o, c in zip(outs, cfgs)]
    if len(set(dirs)) != len(dirs):
        raise ConfigError(f"each run directory may appear once (seeds {[c.seed for c in cfgs]}); give runs "
                          "that share a seed their own output roots")


def train(cfg: TrainConfig, out: str | os.PathLike = "runs", arrays: data_mod.CifarArrays | None = None) -> Path:
    """Train one run into its run directory, resuming it if it exists; returns the directory."""
    return train_runs([cfg], out, arrays)[0]


def train_runs(cfgs: list[TrainConfig], out: str | os.PathLike | Sequence[str | os.PathLike] = "runs",
               arrays: data_mod.CifarArrays | None = None) -> list[Path]:
    """Train the runs of ``cfgs`` together, each into its own run directory; returns the directories.

    ``out``: one output root for all, or one per config. Holds every run directory's lock
    throughout (taken in the order of the directories' paths, so two groups cannot deadlock).
    Complete runs are skipped, unfinished ones resumed from their checkpoints; runs that stopped
    at different epochs are finished one at a time (the same result: a run does not depend on
    its company). The data are loaded only if some run is unfinished.
    """
    outs = [out] * len(cfgs) if isinstance(out, (str, os.PathLike)) else list(out)
    check_batchable(cfgs, outs)
    cfg0 = cfgs[0]
    device = resolve_device(cfg0.device)
    if arrays is not None:
        check_subset_sizes(cfg0, arrays)  # equal for all runs; before any directory is made
    apply_runtime_settings(cfg0)
    with contextlib.ExitStack() as stack:
        runs = _open_runs(cfgs, outs, device, stack)
        todo = [r for r in runs if not r.complete]
        if not todo:
            return [r.run_dir for r in runs]
        if arrays is None:
            arrays = data_mod.load_cifar10(cfg0.data_root, cfg0.data_source, progress=cfg0.progress)
        data = [prepare_run(r, arrays) for r in todo]
        for d in data[1:]:
            d.x_train, d.x_test = data[0].x_train, data[0].x_test  # equal: one copy
        models = [model_from_config(r.cfg).to(device) for r in todo]
        begun = [begin_run(r, d, m) for r, d, m in zip(todo, data, models)]
        if len({start for start, _ in begun}) > 1:
            stack.close()  # release the locks: each run takes its own again
            return [train_runs([r.cfg], o, arrays)[0] for r, o in zip(runs, outs)]
        engine = Engine(models, [r.cfg for r in todo], device, [state for _, state in begun])
        _epoch_loop(todo, data, models, engine, begun[0][0])
    return [r.run_dir for r in runs]


def _open_runs(cfgs: list[TrainConfig], outs: list, device: torch.device,
               stack: contextlib.ExitStack) -> list[RunRecorder]:
    """A RunRecorder per config (in their order), the locks taken in the order of the directories' paths."""
    dirs = [run_directory(o, c.profile, c.model, c.seed).resolve() for c, o in zip(cfgs, outs)]
    runs: list[RunRecorder | None] = [None] * len(cfgs)
    for i in sorted(range(len(cfgs)), key=lambda i: str(dirs[i])):
        runs[i] = stack.enter_context(RunRecorder(cfgs[i], outs[i], device))
    return runs


def _epoch_loop(runs: list[RunRecorder], data: list[PreparedData], models: list[MLP], engine: Engine,
                start: int) -> None:
    """The package's one epoch loop: step every run, then check, evaluate and record each."""
    cfg = runs[0].cfg
    x = data[0].x_train
    ys = torch.stack([d.y_noisy for d in data])
    seeds = ",".join(str(r.cfg.seed) for r in runs)
    bar = tqdm(range(start + 1, cfg.epochs + 1), desc=f"{cfg.model} seed{'s' if len(runs) > 1 else ''} {seeds}",
               unit="epoch", initial=start, total=cfg.epochs, disable=not cfg.progress)
    for epoch in bar:
        t0 = time.perf_counter()
        engine.set_epoch(epoch)
        orders = torch.stack([batch_order(len(x), r.cfg.resolved_order_seed, epoch) for r in runs])
        losses = engine.train_epoch(x, ys, orders, cfg.batch_size)
        seconds = (time.perf_counter() - t0) / len(runs)
        rows = [record_epoch(r, data[j], epoch, models[j], loss, seconds, lambda j=j: engine.checkpoint_state(j))
                for j, (r, loss) in enumerate(zip(runs, losses))]
        if len(rows) == 1:
            bar.set_postfix(test_acc=f"{rows[0]['test_acc']:.3f}", noisy_acc=f"{rows[0]['noisy_acc']:.3f}")
    bar.close()
    for r in runs:
        r.finish()


def prepare_run(run: RunRecorder, arrays: data_mod.CifarArrays) -> PreparedData:
    """This run's data on its device; ``labels.npz`` and ``probe.npz`` written (or verified)."""
    d = prepare_data(run.cfg, arrays, run.device)
    labels = {"train_indices": d.train_indices, "test_indices": d.test_indices,
              "original": d.labels.original, "noisy": d.labels.noisy, "noisy_mask": d.labels.mask,
              "clean_half": d.clean_half}
    run.record_data(labels, {**d.probe.as_arrays(), **d.probe_inputs}, d.mean, d.std, d.source)
    return d


def begin_run(run: RunRecorder, d: PreparedData, model: MLP) -> tuple[int, dict | None]:
    """Load the checkpoint into ``model``, or record epoch 0; returns the last done epoch and the
    checkpointed Adam ``state`` (None for a fresh start)."""
    checkpoint = run.resume()
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        return int(checkpoint["epoch"]), checkpoint["optimizer"]["state"]
    row, correct = _evaluate(model, d, run.cfg, epoch=0, train_loss=float("nan"), train_seconds=0.0)
    run.start(row, correct, take_snapshot(model, d, run.cfg))
    return 0, None


def record_epoch(run: RunRecorder, d: PreparedData, epoch: int, model: MLP, train_loss: float,
                 train_seconds: float, checkpoint_state: Callable[[], dict]) -> dict[str, float]:
    """Check the loss, evaluate, snapshot if scheduled and record epoch ``epoch``; returns its metrics row."""
    cfg = run.cfg
    limit = loss_limit(run.rows[0])
    if not math.isfinite(train_loss) or train_loss > limit:
        what = (f"is {train_loss}" if not math.isfinite(train_loss)
                else f"is {train_loss:.4g}, more than {DIVERGENCE_FACTOR:g} x its initial value (limit {limit:.4g})")
        raise TrainingDiverged(
            f"{cfg.model} seed {cfg.seed}: training loss {what} at epoch {epoch}: the run diverged. "
            f"Lower lr (now {cfg.lr}) or use precision=fp32; epochs up to the last checkpoint "
            f"stay recorded in {run.run_dir}", run_dir=run.run_dir)
    row, correct = _evaluate(model, d, cfg, epoch, train_loss, train_seconds)
    snapshot = take_snapshot(model, d, cfg) if run.wants_snapshot(epoch) else None
    return run.end_epoch(epoch, row, correct, snapshot, checkpoint_state)


def loss_limit(initial: dict[str, float]) -> float:
    """The training loss above which a run counts as diverged, from its epoch-0 metrics row."""
    losses = [float(initial[f"{s}_loss"]) for s in ("clean", "noisy", "test")]
    return DIVERGENCE_FACTOR * max([math.log(10), *(x for x in losses if math.isfinite(x))])


def _evaluate(model: MLP, d: PreparedData, cfg: TrainConfig, epoch: int, train_loss: float,
              train_seconds: float) -> tuple[dict[str, float], np.ndarray]:
    t0 = time.perf_counter()
    m, correct = four_way_evaluation(model, d.x_train, d.y_noisy, d.y_true, d.noisy_mask, d.x_test,
                                     d.y_test, cfg.eval_batch_size)
    return {"epoch": epoch, **m, "train_loss": train_loss, "train_seconds": train_seconds,
            "eval_seconds": time.perf_counter() - t0}, correct


