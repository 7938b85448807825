"""The instrumented trainer: Adam + cross-entropy, four-way metrics every epoch, snapshots, resume."""

from __future__ import annotations

import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from . import data as data_mod
from .async_checkpoint import AsyncCheckpointer
from .config import TrainConfig, resume_insensitive_keys, snapshot_epochs
from .errors import RunDirError, TrainingDiverged
from .evaluation import four_way_evaluation
from .models import MLP, model_from_config
from .noise import NoisyLabels, symmetric_noise
from .schedule import lr_at, set_lr
from .recording import (METRIC_COLUMNS, SCHEMA_VERSION, TEST_CORRECT_FILE, atomic_savez, atomic_write_json,
                        atomic_write_text, config_differences, load_checkpoint, now_iso,
                        provenance, read_json, read_test_correct, run_directory, save_checkpoint,
                        write_test_correct)
from .snapshots import (GROUP_TEST, HALF_A, HALF_B, N_RANDOM_NEURONS, Probe, choose_random_neurons,
                        group_class_means, input_statistics, principal_components, probe_statistics,
                        select_probe, split_clean_halves)


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then CPU."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@dataclass
class PreparedData:
    """One run's data on its device: normalised inputs, labels, noise, probe set."""

    x_train: torch.Tensor
    x_test: torch.Tensor
    y_noisy: torch.Tensor
    y_true: torch.Tensor
    noisy_mask: torch.Tensor
    y_test: torch.Tensor
    labels: NoisyLabels
    train_indices: np.ndarray
    test_indices: np.ndarray
    probe: Probe
    x_probe: torch.Tensor
    probe_inputs: dict[str, np.ndarray]
    mean: np.ndarray
    std: np.ndarray
    source: str
    clean_half: np.ndarray
    random_neurons: list[np.ndarray]
    train_groups: dict[str, tuple[torch.Tensor, torch.Tensor]]
    test_groups: dict[str, tuple[torch.Tensor, torch.Tensor]]


def prepare_data(cfg: TrainConfig, arrays: data_mod.CifarArrays, device: torch.device) -> PreparedData:
    """Subset, noise, normalise and move to ``device`` what ``cfg`` asks for."""
    train_idx = data_mod.stratified_indices(arrays.y_train, cfg.n_train, cfg.subset_seed)
    test_idx = data_mod.stratified_indices(arrays.y_test, cfg.n_test, cfg.subset_seed + 1)
    x_train_u8, x_test_u8 = arrays.x_train[train_idx], arrays.x_test[test_idx]
    y_test = arrays.y_test[test_idx]
    labels = symmetric_noise(arrays.y_train[train_idx], cfg.noise_rate, cfg.resolved_noise_seed,
                             exact_per_class=cfg.noise_exact_per_class)
    mean, std = data_mod.channel_stats(x_train_u8)
    x_train = data_mod.normalize(data_mod.to_float_tensor(x_train_u8), mean, std)
    x_test = data_mod.normalize(data_mod.to_float_tensor(x_test_u8), mean, std)
    probe = select_probe(labels, y_test, cfg.probe_per_class, seed=cfg.resolved_noise_seed)
    clean_half = split_clean_halves(labels, seed=cfg.resolved_noise_seed)
    components, pixel_mean = principal_components(x_train_u8, seed=cfg.subset_seed)
    is_test = probe.group == GROUP_TEST
    probe_u8 = np.where(is_test[:, None, None, None], x_test_u8[np.where(is_test, probe.index, 0)],
                        x_train_u8[np.where(is_test, 0, probe.index)])
    x_probe = torch.where(torch.as_tensor(is_test)[:, None], x_test[np.where(is_test, probe.index, 0)],
                          x_train[np.where(is_test, 0, probe.index)])
    as_long = lambda a: torch.as_tensor(a, dtype=torch.long, device=device)  # noqa: E731
    as_bool = lambda a: torch.as_tensor(a, dtype=torch.bool, device=device)  # noqa: E731
    y_true, y_noisy, mask = as_long(labels.original), as_long(labels.noisy), as_bool(labels.mask)
    train_groups = {"clean": (y_true, ~mask), "clean_a": (y_true, as_bool(clean_half == HALF_A)),
                    "clean_b": (y_true, as_bool(clean_half == HALF_B)), "noisy": (y_true, mask),
                    "noisy_by_noisy": (y_noisy, mask)}
    test_groups = {"test": (as_long(y_test), as_bool(np.ones(len(y_test), dtype=bool)))}
    return PreparedData(
        x_train=x_train.to(device), x_test=x_test.to(device),
        y_noisy=as_long(labels.noisy), y_true=as_long(labels.original),
        noisy_mask=torch.as_tensor(labels.mask, device=device), y_test=as_long(y_test),
        labels=labels, train_indices=train_idx, test_indices=test_idx, probe=probe,
        x_probe=x_probe.to(device), probe_inputs=input_statistics(probe_u8, components, pixel_mean),
        mean=mean, std=std, source=arrays.source, clean_half=clean_half,
        random_neurons=choose_random_neurons(cfg.widths, N_RANDOM_NEURONS, cfg.seed),
        train_groups=train_groups, test_groups=test_groups,
    )


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
    """Train one model/seed into its run directory, resuming it if it exists; returns the directory."""
    device = resolve_device(cfg.device)
    apply_runtime_settings(cfg)
    run = RunRecorder(cfg, out, device)
    if run.complete:
        return run.run_dir
    if arrays is None:
        arrays = data_mod.load_cifar10(cfg.data_root, cfg.data_source, progress=cfg.progress)
    prepared = run.prepare(arrays)
    model = model_from_config(cfg).to(device)
    opt = make_optimizer(model, cfg, device)
    amp_dtype = autocast_dtype(cfg)
    start = run.begin(model, opt)

    from tqdm.auto import tqdm

    bar = tqdm(range(start + 1, cfg.epochs + 1), desc=f"{cfg.model} seed {cfg.seed}", unit="epoch",
               initial=start, total=cfg.epochs, disable=not cfg.progress)
    for epoch in bar:
        t0 = time.perf_counter()
        set_lr(opt, lr_at(cfg, epoch))
        order = batch_order(len(prepared.x_train), cfg.resolved_order_seed, epoch)
        train_loss = train_one_epoch(model, opt, prepared.x_train, prepared.y_noisy, order,
                                     cfg.batch_size, amp_dtype)
        row = run.end_epoch(epoch, model, train_loss, time.perf_counter() - t0,
                            lambda: {"model": model.state_dict(), "optimizer": opt.state_dict()})
        bar.set_postfix(test_acc=f"{row['test_acc']:.3f}", noisy_acc=f"{row['noisy_acc']:.3f}")
    bar.close()
    run.finish()
    return run.run_dir


class RunRecorder:
    """The bookkeeping of one run directory, shared by ``train`` and ``multiseed.train_seeds``.

    Opens (or checks) the directory, writes the static files, resumes from the checkpoint or
    records epoch 0, then after each trained epoch records metrics, snapshots and checkpoints.
    """

    def __init__(self, cfg: TrainConfig, out: str | os.PathLike, device: torch.device) -> None:
        self.cfg, self.device = cfg, device
        self.run_dir = run_directory(out, cfg.profile, cfg.model, cfg.seed)
        self.state = _open_run_dir(self.run_dir, cfg, device)
        self.schedule = set(snapshot_epochs(cfg.epochs, cfg.snapshot_dense_until, cfg.snapshot_per_decade))
        self.prepared: PreparedData | None = None
        self.rows: list[dict] = []
        self.test_correct: list[np.ndarray] = []
        self.checkpointer = AsyncCheckpointer(pin=True, background=device.type == "cuda")
        self.complete = state_is_complete(self.state, cfg.epochs)
        if self.complete:
            _log(cfg, f"{self.run_dir}: already complete ({self.state['epochs_done']} epochs), nothing to do")

    def prepare(self, arrays: data_mod.CifarArrays) -> PreparedData:
        """This run's data on its device; labels.npz and probe.npz written (or verified)."""
        self.prepared = prepare_data(self.cfg, arrays, self.device)
        _write_static_files(self.run_dir, self.prepared)
        return self.prepared

    def begin(self, model: MLP, opt: torch.optim.Optimizer) -> int:
        """Load the checkpoint into ``model`` and ``opt``, or record epoch 0; returns the last done epoch."""
        cfg, run_dir = self.cfg, self.run_dir
        checkpoint = load_checkpoint(run_dir, map_location=str(self.device))
        metrics = _read_metrics(run_dir)
        if checkpoint is not None:
            model.load_state_dict(checkpoint["model"])
            opt.load_state_dict(checkpoint["optimizer"])
            start = int(checkpoint["epoch"])
            if start > cfg.epochs:
                raise RunDirError(f"{run_dir} is already trained to epoch {start}, beyond the requested "
                                  f"epochs={cfg.epochs}; ask for at least {start} epochs, or use another --out")
            metrics = metrics[metrics["epoch"] <= start]
            if len(metrics) != start + 1:
                raise RunDirError(f"{run_dir}/metrics.csv lacks epochs before the checkpoint (epoch {start}); "
                                  f"delete {run_dir} to start this run again")
            correct = read_test_correct(run_dir, len(self.prepared.y_test))
            if correct is None or len(correct) < start + 1:
                raise RunDirError(f"{run_dir}/{TEST_CORRECT_FILE} lacks epochs before the checkpoint "
                                  f"(epoch {start}); delete {run_dir} to start this run again")
            self.test_correct = list(correct[:start + 1])
            _log(cfg, f"{run_dir}: resuming after epoch {start}")
        else:
            start = 0
            row, correct = _evaluate(model, self.prepared, cfg, epoch=0, train_loss=float("nan"),
                                     train_seconds=0.0)
            metrics = pd.DataFrame([row], columns=list(METRIC_COLUMNS))
            self.test_correct = [correct]
            _snapshot(run_dir, model, self.prepared, cfg, 0)
            _write_metrics(run_dir, metrics)
            write_test_correct(run_dir, np.stack(self.test_correct))
        _remove_snapshots_after(run_dir, start)
        self.rows = metrics.to_dict("records")
        return start

    def end_epoch(self, epoch: int, model: MLP, train_loss: float, train_seconds: float,
                  checkpoint_state: Callable[[], dict]) -> dict[str, float]:
        """Record epoch ``epoch``: metrics row, snapshot if scheduled, checkpoint if due; returns the row."""
        cfg, run_dir = self.cfg, self.run_dir
        if not math.isfinite(train_loss):
            raise TrainingDiverged(
                f"{cfg.model} seed {cfg.seed}: training loss is {train_loss} at epoch {epoch}. "
                f"Lower lr (now {cfg.lr}) or use precision=fp32; epochs up to the last checkpoint "
                f"stay recorded in {run_dir}")
        row, correct = _evaluate(model, self.prepared, cfg, epoch, train_loss, train_seconds)
        self.rows.append(row)
        self.test_correct.append(correct)
        if epoch in self.schedule:
            _snapshot(run_dir, model, self.prepared, cfg, epoch)
        write_test_correct(run_dir, np.stack(self.test_correct))
        _write_metrics(run_dir, pd.DataFrame(self.rows, columns=list(METRIC_COLUMNS)))
        if epoch % cfg.checkpoint_every == 0 or epoch == cfg.epochs:
            self.checkpointer.submit(checkpoint_state(),
                                     lambda state, epoch=epoch: save_checkpoint(run_dir, state, epoch))
        return row

    def finish(self) -> None:
        """Mark the run complete, with its totals (after the last checkpoint is on disk)."""
        self.checkpointer.wait()
        _finish(self.run_dir)


def state_is_complete(state: dict, epochs: int) -> bool:
    """True if a run directory's ``config.json`` state says it finished ``epochs`` epochs or more."""
    return state.get("status") == "complete" and state.get("epochs_done", -1) >= epochs


def _log(cfg: TrainConfig, message: str) -> None:
    if cfg.progress:
        print(message, flush=True)


def _evaluate(model: MLP, d: PreparedData, cfg: TrainConfig, epoch: int, train_loss: float,
              train_seconds: float) -> tuple[dict[str, float], np.ndarray]:
    t0 = time.perf_counter()
    m, correct = four_way_evaluation(model, d.x_train, d.y_noisy, d.y_true, d.noisy_mask, d.x_test,
                                     d.y_test, cfg.eval_batch_size)
    return {"epoch": epoch, **m, "train_loss": train_loss, "train_seconds": train_seconds,
            "eval_seconds": time.perf_counter() - t0}, correct


def take_snapshot(model: MLP, d: PreparedData, cfg: TrainConfig) -> dict[str, np.ndarray]:
    """Every array of one snapshot: class means over all images by group, and the probe statistics."""
    arrays = probe_statistics(model, d.x_probe, cfg.top_k, d.random_neurons)
    for x, groups in ((d.x_train, d.train_groups), (d.x_test, d.test_groups)):
        means, counts = group_class_means(model, x, groups, cfg.eval_batch_size)
        for group, per_layer in means.items():
            arrays[f"count_{group}"] = counts[group]
            for layer, mean in enumerate(per_layer, start=1):
                arrays[f"l{layer}_mean_{group}"] = mean
    return arrays


def _snapshot(run_dir: Path, model: MLP, d: PreparedData, cfg: TrainConfig, epoch: int) -> None:
    arrays = take_snapshot(model, d, cfg)
    atomic_savez(run_dir / "snapshots" / f"epoch_{epoch:05d}.npz", epoch=np.int64(epoch), **arrays)


def _remove_snapshots_after(run_dir: Path, epoch: int) -> None:
    for f in (run_dir / "snapshots").glob("epoch_*.npz"):
        if int(f.stem.split("_")[1]) > epoch:
            f.unlink()


def _read_metrics(run_dir: Path) -> pd.DataFrame:
    path = run_dir / "metrics.csv"
    if not path.exists():
        return pd.DataFrame(columns=list(METRIC_COLUMNS))
    return pd.read_csv(path)


def _write_metrics(run_dir: Path, metrics: pd.DataFrame) -> None:
    atomic_write_text(run_dir / "metrics.csv", metrics.to_csv(index=False, float_format="%.17g"))


def _open_run_dir(run_dir: Path, cfg: TrainConfig, device: torch.device) -> dict:
    """Create the run directory, or check that an existing one holds this same configuration."""
    path = run_dir / "config.json"
    wanted = cfg.to_dict()
    if path.exists():
        state = read_json(path)
        if state.get("schema_version") != SCHEMA_VERSION:
            raise RunDirError(f"{path} has schema {state.get('schema_version')}, expected {SCHEMA_VERSION}")
        diff = config_differences(state["config"], wanted, resume_insensitive_keys(cfg))
        if diff:
            listed = "; ".join(f"{k}: recorded {a!r}, requested {b!r}" for k, (a, b) in diff.items())
            raise RunDirError(f"{run_dir} holds a run with another configuration ({listed}). "
                              "Use another --out or seed, or delete that directory to replace it.")
        if state_is_complete(state, cfg.epochs):
            return state
        before, now = state["provenance"], provenance(str(device))
        changed = [k for k in ("device", "torch_threads", "torch_version")
                   if before.get(k) is not None and before.get(k) != now[k]]
        if changed:
            warnings.warn(f"{run_dir} is resumed with another {', '.join(changed)} than it started with: "
                          "the continued run need not be bit-identical to an uninterrupted one "
                          "(recorded under provenance.resumes)")
        resumes = before.get("resumes", []) + [{"time": now_iso(), "device": now["device"],
                                                "torch_threads": now["torch_threads"],
                                                "torch_version": now["torch_version"]}]
        state["config"] = wanted
        state["status"] = "running"
        state["provenance"] = {**now, **{k: before[k] for k in ("device", "torch_threads", "torch_version",
                                                               "start_time") if k in before},
                               "resumes": resumes}
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        state = {"schema_version": SCHEMA_VERSION, "config": wanted, "status": "running",
                 "epochs_done": 0,
                 "provenance": {**provenance(str(device)), "start_time": now_iso(), "end_time": None}}
    on_disk = {int(f.stem.split("_")[1]) for f in (run_dir / "snapshots").glob("epoch_*.npz")}
    schedule = snapshot_epochs(cfg.epochs, cfg.snapshot_dense_until, cfg.snapshot_per_decade)
    state["snapshot_epochs"] = sorted(set(schedule) | {e for e in on_disk if e <= cfg.epochs})
    atomic_write_json(path, state)
    return state


def _write_static_files(run_dir: Path, d: PreparedData) -> None:
    """labels.npz and probe.npz: written once, verified on resume."""
    labels = {"train_indices": d.train_indices, "test_indices": d.test_indices,
              "original": d.labels.original, "noisy": d.labels.noisy, "noisy_mask": d.labels.mask,
              "clean_half": d.clean_half}
    probe = {**d.probe.as_arrays(), **d.probe_inputs}
    for name, arrays in (("labels.npz", labels), ("probe.npz", probe)):
        path = run_dir / name
        if path.exists():
            with np.load(path) as z:
                same = set(z.files) == set(arrays) and all(_same_array(z[k], v) for k, v in arrays.items())
            if not same:
                raise RunDirError(f"{path} differs from what this configuration produces; "
                                  f"delete {run_dir} to start this run again")
        else:
            atomic_savez(path, **arrays)
    config_path = run_dir / "config.json"
    state = read_json(config_path)
    state["normalization"] = {"mean": d.mean.tolist(), "std": d.std.tolist()}
    state["provenance"]["data_source"] = d.source
    atomic_write_json(config_path, state)


def _same_array(stored: np.ndarray, made: np.ndarray) -> bool:
    """Integers and booleans must match exactly; floats (input statistics) to float tolerance."""
    if stored.shape != made.shape:
        return False
    if np.issubdtype(stored.dtype, np.floating):
        return bool(np.allclose(stored, made, rtol=1e-6, atol=1e-9))
    return bool(np.array_equal(stored, made))


def _finish(run_dir: Path) -> None:
    path = run_dir / "config.json"
    state = read_json(path)
    metrics = _read_metrics(run_dir)
    state.update(status="complete", epochs_done=int(metrics["epoch"].max()))
    state["provenance"]["end_time"] = now_iso()
    state["provenance"]["train_seconds_total"] = float(metrics["train_seconds"].sum())
    state["provenance"]["eval_seconds_total"] = float(metrics["eval_seconds"].sum())
    atomic_write_json(path, state)

