"""One run's data on its device (subset, noise, normalisation, probe set, groups) and its snapshots.

``prepare_data`` turns the CIFAR-10 arrays and a config into a ``PreparedData``;
``take_snapshot`` computes every array of one activation snapshot (schema in ``runs.schema``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ddd_support.config import TrainConfig
from ddd_support.data import cifar as data_mod
from ddd_support.data.noise import NoisyLabels, symmetric_noise
from ddd_support.errors import ConfigError
from ddd_support.models import MLP
from ddd_support.train.snapshots import (GROUP_TEST, HALF_A, HALF_B, N_RANDOM_NEURONS, Probe, choose_random_neurons,
                                         choose_unseen, group_class_means, input_statistics, principal_components,
                                         probe_statistics, select_probe, split_clean_halves)


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
    #: Images outside the training subset and their ``unseen`` group (None: the unseen group is
    #: drawn from the test images and sits in ``test_groups``).
    x_unseen: torch.Tensor | None = None
    unseen_groups: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None


def check_subset_sizes(cfg: TrainConfig, arrays: data_mod.CifarArrays) -> None:
    """A ConfigError if ``n_train`` or ``n_test`` asks for more images than the data set has."""
    for key, labels, split in (("n_train", arrays.y_train, "training"), ("n_test", arrays.y_test, "test")):
        wanted = getattr(cfg, key)
        if wanted is not None and wanted > len(labels):
            raise ConfigError(f"{key}={wanted} is more than the {len(labels)} {split} images of the data set "
                              f"({arrays.source}); use {key}={len(labels)} or {key}=None for all of them")


def prepare_data(cfg: TrainConfig, arrays: data_mod.CifarArrays, device: torch.device) -> PreparedData:
    """Subset, noise, normalise and move to ``device`` what ``cfg`` asks for."""
    check_subset_sizes(cfg, arrays)
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
    outside = np.setdiff1d(np.arange(len(arrays.y_train)), train_idx)
    x_unseen = unseen_groups = None
    if len(outside):  # a subset: the unseen images are training images the run leaves out
        rows = outside[choose_unseen(labels, arrays.y_train[outside], cfg.resolved_noise_seed)]
        if len(rows):  # none without label noise: no noisy group to match
            x_unseen = data_mod.normalize(data_mod.to_float_tensor(arrays.x_train[rows]), mean, std).to(device)
            unseen_groups = {"unseen": (as_long(arrays.y_train[rows]), as_bool(np.ones(len(rows), dtype=bool)))}
    else:  # all training images: the unseen images are test images
        picked = np.zeros(len(y_test), dtype=bool)
        picked[choose_unseen(labels, y_test, cfg.resolved_noise_seed)] = True
        test_groups["unseen"] = (as_long(y_test), as_bool(picked))
    return PreparedData(
        x_train=x_train.to(device), x_test=x_test.to(device),
        y_noisy=as_long(labels.noisy), y_true=as_long(labels.original),
        noisy_mask=torch.as_tensor(labels.mask, device=device), y_test=as_long(y_test),
        labels=labels, train_indices=train_idx, test_indices=test_idx, probe=probe,
        x_probe=x_probe.to(device), probe_inputs=input_statistics(probe_u8, components, pixel_mean),
        mean=mean, std=std, source=arrays.source, clean_half=clean_half,
        random_neurons=choose_random_neurons(cfg.widths, N_RANDOM_NEURONS, cfg.seed),
        train_groups=train_groups, test_groups=test_groups, x_unseen=x_unseen, unseen_groups=unseen_groups,
    )


def take_snapshot(model: MLP, d: PreparedData, cfg: TrainConfig) -> dict[str, np.ndarray]:
    """Every array of one snapshot: class means over all images by group, and the probe statistics."""
    arrays = probe_statistics(model, d.x_probe, cfg.top_k, d.random_neurons)
    parts = [(d.x_train, d.train_groups), (d.x_test, d.test_groups)]
    if d.x_unseen is not None and d.unseen_groups is not None:
        parts.append((d.x_unseen, d.unseen_groups))
    for x, groups in parts:
        means, counts = group_class_means(model, x, groups, cfg.eval_batch_size)
        for group, per_layer in means.items():
            arrays[f"count_{group}"] = counts[group]
            for layer, mean in enumerate(per_layer, start=1):
                arrays[f"l{layer}_mean_{group}"] = mean
    return arrays
