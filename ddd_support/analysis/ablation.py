"""Causal test of the large activation: silence one hidden neuron and re-measure the four splits.

The neuron's post-ReLU output is replaced, through a forward hook on ``model.relus[layer-1]``,
by its mean over the training images (``mode="mean"``, the default: it removes the neuron's
image-to-image information but keeps its average contribution downstream, which matters for
an always-on neuron) or by zero (``mode="zero"``). The same is done, one at a time, for
``n_random`` random neurons of the same layer as a control. The effect on the test set is a
paired comparison over the same images (McNemar's test and a paired interval of the accuracy
change), and the neuron's cost is ranked among the random neurons' costs (``percentile``).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Literal

import numpy as np
import pandas as pd
import torch

from ddd_support.analysis.large_activation import (
    candidate_layer,
    large_activation_table,
    largest_layer,
    per_image_table,
)
from ddd_support.analysis.stats import mcnemar, paired_change, percentile_rank
from ddd_support.config import TrainConfig
from ddd_support.data.cifar import CifarArrays, load_cifar10
from ddd_support.errors import CheckpointError, RunDirError
from ddd_support.files import atomic_savez, atomic_write_text
from ddd_support.models import MLP, model_from_config
from ddd_support.runs.checkpoints import load_checkpoint
from ddd_support.runs.reader import RunData, load_run
from ddd_support.runs.schema import CHECKPOINT_INDEX, SPLITS
from ddd_support.train.driver import PreparedData, prepare_data, resolve_device
from ddd_support.train.evaluation import four_way_evaluation

Mode = Literal["zero", "mean"]
#: What the book and the reference export ablate by default.
DEFAULT_MODE: Mode = "mean"
DEFAULT_RANDOM = 20
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
def mean_activation(model: MLP, x: torch.Tensor, layer: int, neuron: int, batch_size: int = 4096) -> float:
    """Mean post-ReLU activation of one neuron over the inputs ``x``."""
    model.eval()
    total = 0.0
    for start in range(0, len(x), batch_size):
        _, acts = model.forward_with_activations(x[start:start + batch_size])
        total += float(acts.post[layer - 1][:, neuron].double().sum())
    return total / len(x)


def ablation_table(model: MLP, data: PreparedData, layer: int, neuron: int, mode: Mode = "mean",
                   n_random: int = 20, seed: int = 0, batch_size: int = 4096) -> pd.DataFrame:
    """Four-way metrics of the intact model, with ``neuron`` fixed, and with each of ``n_random`` random neurons fixed.

    Rows ``baseline``, ``large neuron``, ``random neuron 1..k``; columns label, layer, neuron,
    mode, value (what the neuron was fixed to), the eight split metrics, their change
    (``d_*``) from the baseline, and on the test images, paired with the baseline:
    ``right_to_wrong``, ``wrong_to_right`` and ``p_mcnemar``, the interval ``d_test_acc_low``
    / ``d_test_acc_high``. ``table.attrs["test_correct"]`` holds each row's per-image
    correctness (rows x n_test, bool).
    """
    if mode not in ("zero", "mean"):
        raise ValueError(f"mode must be 'zero' or 'mean', got {mode!r}")
    width = model.widths[layer - 1] if 1 <= layer <= len(model.widths) else 0
    if not 0 <= neuron < width:
        raise ValueError(f"layer {layer} has {width} neurons; neuron {neuron} does not exist")
    others = np.setdiff1d(np.arange(width), [neuron])
    rng = np.random.default_rng(seed)
    chosen = rng.choice(others, size=min(n_random, len(others)), replace=False)

    correct: list[np.ndarray] = []

    def evaluate() -> dict[str, float]:
        metrics, test_correct = four_way_evaluation(model, data.x_train, data.y_noisy, data.y_true,
                                                    data.noisy_mask, data.x_test, data.y_test, batch_size)
        correct.append(test_correct)
        return metrics

    rows = [{"label": "baseline", "layer": layer, "neuron": -1, "mode": mode, "value": np.nan, **evaluate()}]
    targets = [("large neuron", neuron)] + [(f"random neuron {k}", int(n)) for k, n in enumerate(chosen, 1)]
    for label, n in targets:
        value = 0.0 if mode == "zero" else mean_activation(model, data.x_train, layer, n, batch_size)
        with neuron_fixed(model, layer, n, value):
            rows.append({"label": label, "layer": layer, "neuron": n, "mode": mode, "value": value,
                         **evaluate()})
    table = pd.DataFrame(rows)
    for col in METRICS:
        table[f"d_{col}"] = table[col] - table.loc[0, col]
    stacked = np.stack(correct)
    table = add_paired_tests(table, stacked)
    table.attrs["test_correct"] = stacked
    return table


def add_paired_tests(table: pd.DataFrame, test_correct: np.ndarray) -> pd.DataFrame:
    """Add each row's paired comparison with the baseline row (row 0) over the test images."""
    out = table.copy()
    tests = [mcnemar(test_correct[0], row) for row in test_correct]
    intervals = [paired_change(test_correct[0].astype(float), row.astype(float)) for row in test_correct]
    out["right_to_wrong"] = [t["a_only"] for t in tests]
    out["wrong_to_right"] = [t["b_only"] for t in tests]
    out["p_mcnemar"] = [t["p_value"] for t in tests]
    out["d_test_acc_low"] = [i.low for i in intervals]
    out["d_test_acc_high"] = [i.high for i in intervals]
    return out


def ablation_summary(table: pd.DataFrame) -> dict[str, float]:
    """The large neuron's test-accuracy change with its paired interval and McNemar p, and the
    share of random neurons whose ablation costs less (``percentile``; 1 = costs the most)."""
    large = table[table["label"] == "large neuron"].iloc[0]
    randoms = table[table["label"].str.startswith("random")]
    return {"layer": int(large["layer"]), "neuron": int(large["neuron"]), "mode": str(large["mode"]),
            "d_test_acc": float(large["d_test_acc"]), "low": float(large.get("d_test_acc_low", np.nan)),
            "high": float(large.get("d_test_acc_high", np.nan)), "p_mcnemar": float(large.get("p_mcnemar", np.nan)),
            "percentile": percentile_rank(-float(large["d_test_acc"]), -randoms["d_test_acc"].to_numpy()),
            "random_mean": float(randoms["d_test_acc"].mean()), "n_random": int(len(randoms))}


def ablate_neuron(run: str | os.PathLike | RunData, layer: int, neuron: int | None = None,
                  mode: Mode = "mean", n_random: int = 20, seed: int = 0,
                  arrays: CifarArrays | None = None, device: str = "auto") -> pd.DataFrame:
    """Ablate a neuron of a trained run's newest checkpoint (default: the layer's large-activation neuron).

    The default neuron is the one that is most often the top neuron of an image in the snapshot
    at the checkpoint's epoch (``per_image_table``), or, for runs without per-image statistics,
    the neuron of largest ``absmax`` there.

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
        neuron = default_neuron(run, layer, epoch)
    if arrays is None:
        arrays = load_cifar10(cfg.data_root, cfg.data_source, progress=False)
    data = prepare_data(cfg, arrays, torch.device(device))
    _check_same_data(run, data)
    table = ablation_table(model, data, layer, neuron, mode, n_random, seed, cfg.eval_batch_size)
    table.insert(0, "epoch", int(state["epoch"]))
    return table


def ablation_layer(run: RunData) -> int:
    """The layer ablated by default: the candidate layer of the large activation (``candidate_layer``),
    or, for runs without per-image statistics, the layer of largest probe-wide ratio."""
    table = per_image_table(run)
    return candidate_layer(table)[0] if not table.empty else largest_layer(large_activation_table(run))


def default_neuron(run: RunData, layer: int, epoch: int) -> int:
    """The neuron ablated by default: the modal per-image top neuron, else the top ``absmax`` neuron."""
    snap = run.snapshot(epoch)
    if f"l{layer}_img_argmax" in snap:
        values, counts = np.unique(np.asarray(snap[f"l{layer}_img_argmax"]), return_counts=True)
        return int(values[np.argmax(counts)])
    return int(snap[f"l{layer}_top_idx"][0])


def _check_same_data(run: RunData, data: PreparedData) -> None:
    recorded = run.labels
    same = (np.array_equal(recorded["train_indices"], data.train_indices)
            and np.array_equal(recorded["noisy"], data.labels.noisy)
            and np.array_equal(recorded["test_indices"], data.test_indices))
    if not same:
        raise RunDirError(f"the data given do not rebuild the training set recorded in {run.path}/labels.npz; "
                          "pass the CIFAR-10 copy (data_root) this run was trained on")


#: Files in a run directory holding an ablation computed while the checkpoint was at hand
#: (reference runs carry no checkpoint; ``export_reference`` writes them): the table, and each
#: row's per-image test correctness (packed bits), from which the paired tests are recomputed.
STORED_ABLATION = "ablation.csv"
STORED_ABLATION_BITS = "ablation_test_correct.npz"


def write_stored_ablation(table: pd.DataFrame, run_dir: str | os.PathLike) -> None:
    """Write ``ablation.csv`` and, if the table carries them, the per-image correctness bits."""
    run_dir = Path(run_dir)
    atomic_write_text(run_dir / STORED_ABLATION, table.to_csv(index=False, float_format="%.17g"))
    correct = table.attrs.get("test_correct")
    if correct is not None:
        atomic_savez(run_dir / STORED_ABLATION_BITS, bits=np.packbits(correct, axis=1),
                     n_test=np.int64(correct.shape[1]))


def stored_ablation(run: RunData) -> pd.DataFrame | None:
    """The ablation table saved in the run directory (None if there is none), checked against its bits."""
    path = run.path / STORED_ABLATION
    if not path.exists():
        return None
    table = pd.read_csv(path)
    bits_path = run.path / STORED_ABLATION_BITS
    if bits_path.exists():
        with np.load(bits_path) as z:
            correct = np.unpackbits(z["bits"], axis=1, count=int(z["n_test"])).astype(bool)
        if len(correct) != len(table) or np.abs(correct.mean(axis=1) - table["test_acc"]).max() > 1e-9:
            raise RunDirError(f"{bits_path} does not match {path}; export the run again")
        table = add_paired_tests(table, correct)
        table.attrs["test_correct"] = correct
    return table


def ablation_for(run: RunData, layer: int, mode: Mode = "mean", n_random: int = 20,
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
    n_random = min(n_random, run.widths[layer - 1] - 1)  # as ablation_table caps it
    if stored != (layer, mode, n_random):
        raise CheckpointError(f"{run.path}/{STORED_ABLATION} holds layer {stored[0]}, mode {stored[1]!r}, "
                              f"{stored[2]} random neurons, not layer {layer}, mode {mode!r}, {n_random}; "
                              "this run has no checkpoint to compute another one")
    return table
