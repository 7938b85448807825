"""Causal test of the large activation: silence one hidden neuron and re-measure the four splits.

The neuron's post-ReLU output is replaced, through a forward hook on ``model.relus[layer-1]``,
by zero (``mode="zero"``) or by its mean over the probe set (``mode="mean"``, which removes
the neuron's sample-to-sample information but keeps its average contribution downstream).
The same is done, one at a time, for ``n_random`` random neurons of the same layer as a
control: if the large neuron matters more than an ordinary one, its ablation costs more.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator, Literal

import numpy as np
import pandas as pd
import torch

from ..config import TrainConfig
from ..data import CifarArrays, load_cifar10
from ..errors import CheckpointError, RunDirError
from ..evaluation import four_way_metrics
from ..models import MLP, model_from_config
from ..recording import CHECKPOINT_INDEX, SPLITS, load_checkpoint
from ..training import PreparedData, prepare_data, resolve_device
from .rundata import RunData, load_run

Mode = Literal["zero", "mean"]
METRICS: tuple[str, ...] = tuple(f"{s}_{m}" for s in SPLITS for m in ("acc", "loss"))


@contextmanager
def neuron_fixed(model: MLP, layer: int, neuron: int, value: float) -> Iterator[None]:
    """While active, hidden ``layer`` (1-based) outputs ``value`` for ``neuron`` on every sample."""
    if not 1 <= layer <= len(model.relus):
        raise ValueError(f"layer must be in 1..{len(model.relus)}, got {layer}")
    if not 0 <= neuron < model.widths[layer - 1]:
        raise ValueError(f"neuron must be in 0..{model.widths[layer - 1] - 1}, got {neuron}")

    def hook(_module: torch.nn.Module, _inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        output = output.clone()
        output[:, neuron] = value
        return output

    handle = model.relus[layer - 1].register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@torch.inference_mode()
def probe_mean(model: MLP, x_probe: torch.Tensor, layer: int, neuron: int) -> float:
    """Mean post-ReLU activation of one neuron over the probe inputs."""
    model.eval()
    _, acts = model.forward_with_activations(x_probe)
    return float(acts.post[layer - 1][:, neuron].double().mean())


def ablation_table(model: MLP, data: PreparedData, layer: int, neuron: int, mode: Mode = "zero",
                   n_random: int = 5, seed: int = 0, batch_size: int = 4096) -> pd.DataFrame:
    """Four-way metrics of the intact model, with ``neuron`` fixed, and with each of ``n_random`` random neurons fixed.

    Rows ``baseline``, ``large neuron``, ``random neuron 1..k``; columns label, layer, neuron,
    mode, value (what the neuron was fixed to), the eight split metrics and their change
    (``d_*``) from the baseline.
    """
    if mode not in ("zero", "mean"):
        raise ValueError(f"mode must be 'zero' or 'mean', got {mode!r}")
    width = model.widths[layer - 1] if 1 <= layer <= len(model.widths) else 0
    if not 0 <= neuron < width:
        raise ValueError(f"layer {layer} has {width} neurons; neuron {neuron} does not exist")
    others = np.setdiff1d(np.arange(width), [neuron])
    rng = np.random.default_rng(seed)
    chosen = rng.choice(others, size=min(n_random, len(others)), replace=False)

    def evaluate() -> dict[str, float]:
        return four_way_metrics(model, data.x_train, data.y_noisy, data.y_true, data.noisy_mask,
                                data.x_test, data.y_test, batch_size)

    rows = [{"label": "baseline", "layer": layer, "neuron": -1, "mode": mode, "value": np.nan, **evaluate()}]
    targets = [("large neuron", neuron)] + [(f"random neuron {k}", int(n)) for k, n in enumerate(chosen, 1)]
    for label, n in targets:
        value = 0.0 if mode == "zero" else probe_mean(model, data.x_probe, layer, n)
        with neuron_fixed(model, layer, n, value):
            rows.append({"label": label, "layer": layer, "neuron": n, "mode": mode, "value": value,
                         **evaluate()})
    table = pd.DataFrame(rows)
    for col in METRICS:
        table[f"d_{col}"] = table[col] - table.loc[0, col]
    return table


def ablate_neuron(run: str | os.PathLike | RunData, layer: int, neuron: int | None = None,
                  mode: Mode = "zero", n_random: int = 5, seed: int = 0,
                  arrays: CifarArrays | None = None, device: str = "auto") -> pd.DataFrame:
    """Ablate a neuron of a trained run's newest checkpoint (default: the layer's top neuron at the last snapshot).

    ``arrays`` replaces loading CIFAR-10 from the run's ``data_root``/``data_source``; the
    rebuilt training subset and noisy labels must equal the recorded ``labels.npz``.
    ``device="auto"`` picks CUDA, then MPS, then CPU.
    """
    run = run if isinstance(run, RunData) else load_run(run)
    cfg = TrainConfig.from_dict(run.config)
    device = str(resolve_device(device))
    state = load_checkpoint(run.path, map_location=device)
    if state is None:
        raise CheckpointError(f"{run.path} has no checkpoint; ablation needs the trained weights")
    model = model_from_config(cfg).to(device)
    model.load_state_dict(state["model"])
    model.eval()
    if neuron is None:  # the top neuron of the weights being ablated, not of a later snapshot
        epoch = int(state["epoch"])
        if epoch not in run.snapshot_epochs:
            raise RunDirError(f"{run.path} has no snapshot at the checkpoint's epoch {epoch}; "
                              "pass neuron= explicitly")
        neuron = int(run.snapshot(epoch)[f"l{layer}_top_idx"][0])
    if arrays is None:
        arrays = load_cifar10(cfg.data_root, cfg.data_source, progress=False)
    data = prepare_data(cfg, arrays, torch.device(device))
    _check_same_data(run, data)
    table = ablation_table(model, data, layer, neuron, mode, n_random, seed, cfg.eval_batch_size)
    table.insert(0, "epoch", int(state["epoch"]))
    return table


def _check_same_data(run: RunData, data: PreparedData) -> None:
    recorded = run.labels
    same = (np.array_equal(recorded["train_indices"], data.train_indices)
            and np.array_equal(recorded["noisy"], data.labels.noisy)
            and np.array_equal(recorded["test_indices"], data.test_indices))
    if not same:
        raise RunDirError(f"the data given do not rebuild the training set recorded in {run.path}/labels.npz; "
                          "pass the CIFAR-10 copy (data_root) this run was trained on")


#: File in a run directory holding an ablation computed while the checkpoint was at hand
#: (reference runs carry no checkpoint; ``export_reference`` writes it).
STORED_ABLATION = "ablation.csv"


def stored_ablation(run: RunData) -> pd.DataFrame | None:
    """The ablation table saved in the run directory, or None if there is none."""
    path = run.path / STORED_ABLATION
    return pd.read_csv(path) if path.exists() else None


def ablation_for(run: RunData, layer: int, mode: Mode = "zero", n_random: int = 5,
                 arrays: CifarArrays | None = None) -> pd.DataFrame:
    """Ablate with the run's checkpoint if it has one, else read the table stored with it.

    A stored table is used only if it was made for the same layer, mode and number of random
    neurons; otherwise the error says what was stored.
    """
    if (run.path / CHECKPOINT_INDEX).exists():
        return ablate_neuron(run, layer, mode=mode, n_random=n_random, arrays=arrays)
    table = stored_ablation(run)
    if table is None:
        raise CheckpointError(f"{run.path} has neither a checkpoint nor a stored {STORED_ABLATION}; "
                              "ablation needs the trained weights: train the run yourself")
    stored = (int(table["layer"].iloc[0]), str(table["mode"].iloc[0]), int((table["label"] != "baseline").sum() - 1))
    if stored != (layer, mode, n_random):
        raise CheckpointError(f"{run.path}/{STORED_ABLATION} holds layer {stored[0]}, mode {stored[1]!r}, "
                              f"{stored[2]} random neurons, not layer {layer}, mode {mode!r}, {n_random}; "
                              "this run has no checkpoint to compute another one")
    return table
