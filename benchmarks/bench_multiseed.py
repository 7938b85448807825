"""Timing of k seeds trained together (``train.engine.Engine``) against k separate runs."""

from __future__ import annotations

import statistics
import time

import torch

from ddd_support.data import cifar as data_mod  # noqa: E402
from ddd_support.config import TrainConfig  # noqa: E402
from ddd_support.models import model_from_config  # noqa: E402
from ddd_support.train.driver import batch_order  # noqa: E402
from ddd_support.train.engine import Engine  # noqa: E402
from ddd_support.train.prepare import prepare_data  # noqa: E402


def time_seed_batch(cfg: TrainConfig, arrays: data_mod.CifarArrays, device: torch.device, k: int,
                    epochs: int) -> float:
    """Seconds per epoch of bare training of seeds 0..k-1 as one batch."""
    cfgs = [cfg.__class__.from_dict({**cfg.to_dict(), "seed": s}) for s in range(k)]
    data = [prepare_data(c, arrays, device) for c in cfgs]
    models = [model_from_config(c).to(device) for c in cfgs]
    batch = Engine(models, cfgs, device)
    x, ys = data[0].x_train, torch.stack([d.y_noisy for d in data])
    n = len(x)
    batch.train_epoch(x, ys, torch.arange(cfg.batch_size).repeat(k, 1), cfg.batch_size)
    t0 = time.perf_counter()
    for epoch in range(1, epochs + 1):
        orders = torch.stack([batch_order(n, c.resolved_order_seed, epoch) for c in cfgs])
        batch.train_epoch(x, ys, orders, cfg.batch_size)
    return (time.perf_counter() - t0) / epochs


def time_seed_batches(cfg: TrainConfig, arrays: data_mod.CifarArrays, device: torch.device,
                      ks: list[int], epochs: int, repeats: int) -> dict:
    """Median seconds per epoch for each k (repetitions interleaved) and the cost against k x (k=1)."""
    ks = sorted(set(ks) | {1})
    times: dict[int, list[float]] = {k: [] for k in ks}
    for _ in range(repeats):
        for k in ks:
            times[k].append(time_seed_batch(cfg, arrays, device, k, epochs))
    n = cfg.n_train or len(arrays.y_train)
    single = statistics.median(times[1])
    rows = []
    for k in ks:
        t = statistics.median(times[k])
        rows.append({"k": k, "epoch_seconds": t, "samples_per_s_per_seed": n / t,
                     "cost_vs_separate": t / (k * single)})
    return {"stacked_gemms": device.type != "cpu", "rows": rows}
