"""The instrumented trainer: Adam + cross-entropy, four-way metrics every epoch, snapshots, resume.

The training loop and what it measures live here; the run directory it records into (lock,
validation, resume, files) is ``runs.recorder.RunRecorder``'s concern.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ddd_support.data import cifar as data_mod
from ddd_support.config import TrainConfig
from ddd_support.errors import ConfigError, TrainingDiverged
from ddd_support.train.evaluation import four_way_evaluation
from ddd_support.models import MLP, model_from_config
from ddd_support.runs.recorder import RunRecorder, state_is_complete
from ddd_support.train.schedule import lr_at, set_lr
from ddd_support.train.prepare import PreparedData, check_subset_sizes, prepare_data, take_snapshot

__all__ = ["DIVERGENCE_FACTOR", "PreparedData", "RunRecorder", "apply_runtime_settings", "autocast_dtype",
           "batch_order", "begin_run", "check_subset_sizes", "loss_limit", "make_optimizer", "prepare_data",
           "prepare_run", "record_epoch", "resolve_device", "state_is_complete", "take_snapshot", "train",
           "train_one_epoch"]

#: A run has diverged when an epoch's mean training loss exceeds this multiple of its initial loss
#: (the largest of the epoch-0 clean, noisy and test losses, and at least ln 10, chance level on
#: ten classes): a healthy run's training loss stays below its initial value.
DIVERGENCE_FACTOR = 10.0


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


def autocast_dtype(cfg: TrainConfig) -> torch.dtype | None:
    """The autocast dtype of training (bf16) or None (fp32, tf32)."""
    return torch.bfloat16 if cfg.precision == "bf16" else None


def make_optimizer(model: MLP, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """Adam; fused kernels on CUDA and CPU (on CPU about 5x faster than foreach), foreach elsewhere."""
    kwargs = {"fused": True} if device.type in ("cuda", "cpu") else {"foreach": True}
    return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, **kwargs)


def train_one_epoch(model: MLP, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                    order: torch.Tensor, batch_size: int, autocast_dtype: torch.dtype | None) -> float:
    """One pass over ``x`` in the given order; returns the mean mini-batch loss (one sync)."""
    model.train()
    order = order.to(x.device, non_blocking=True)
    total = torch.zeros((), device=x.device)
    n_batches = 0
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        with torch.autocast(x.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.detach().float()
        n_batches += 1
    return total.item() / max(n_batches, 1)


def train(cfg: TrainConfig, out: str | os.PathLike = "runs",
          arrays: data_mod.CifarArrays | None = None) -> Path:
    """Train one model/seed into its run directory, resuming it if it exists; returns the directory.

    Holds the run directory's lock throughout (another process training it makes this one wait).
    """
    device = resolve_device(cfg.device)
    if arrays is not None:
        check_subset_sizes(cfg, arrays)  # before any directory is made
    apply_runtime_settings(cfg)
    with RunRecorder(cfg, out, device) as run:
        if run.complete:
            return run.run_dir
        if arrays is None:
            arrays = data_mod.load_cifar10(cfg.data_root, cfg.data_source, progress=cfg.progress)
        prepared = prepare_run(run, arrays)
        model = model_from_config(cfg).to(device)
        opt = make_optimizer(model, cfg, device)
        amp_dtype = autocast_dtype(cfg)
        start = begin_run(run, prepared, model, opt)

        from tqdm.auto import tqdm

        bar = tqdm(range(start + 1, cfg.epochs + 1), desc=f"{cfg.model} seed {cfg.seed}", unit="epoch",
                   initial=start, total=cfg.epochs, disable=not cfg.progress)
        for epoch in bar:
            t0 = time.perf_counter()
            set_lr(opt, lr_at(cfg, epoch))
            order = batch_order(len(prepared.x_train), cfg.resolved_order_seed, epoch)
            train_loss = train_one_epoch(model, opt, prepared.x_train, prepared.y_noisy, order,
                                         cfg.batch_size, amp_dtype)
            row = record_epoch(run, prepared, epoch, model, train_loss, time.perf_counter() - t0,
                               lambda: {"model": model.state_dict(), "optimizer": opt.state_dict()})
            bar.set_postfix(test_acc=f"{row['test_acc']:.3f}", noisy_acc=f"{row['noisy_acc']:.3f}")
        bar.close()
        run.finish()
    return run.run_dir


def prepare_run(run: RunRecorder, arrays: data_mod.CifarArrays) -> PreparedData:
    """This run's data on its device; ``labels.npz`` and ``probe.npz`` written (or verified)."""
    d = prepare_data(run.cfg, arrays, run.device)
    labels = {"train_indices": d.train_indices, "test_indices": d.test_indices,
              "original": d.labels.original, "noisy": d.labels.noisy, "noisy_mask": d.labels.mask,
              "clean_half": d.clean_half}
    run.record_data(labels, {**d.probe.as_arrays(), **d.probe_inputs}, d.mean, d.std, d.source)
    return d


def begin_run(run: RunRecorder, d: PreparedData, model: MLP, opt: torch.optim.Optimizer) -> int:
    """Load the checkpoint into ``model`` and ``opt``, or record epoch 0; returns the last done epoch."""
    checkpoint = run.resume()
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        opt.load_state_dict(checkpoint["optimizer"])
        return int(checkpoint["epoch"])
    row, correct = _evaluate(model, d, run.cfg, epoch=0, train_loss=float("nan"), train_seconds=0.0)
    run.start(row, correct, take_snapshot(model, d, run.cfg))
    return 0


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
            f"stay recorded in {run.run_dir}")
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


