"""The fixed probe set and the activation snapshots taken on it (schema in ``recording``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .models import MLP
from .noise import NoisyLabels

GROUP_CLEAN, GROUP_NOISY, GROUP_TEST = 0, 1, 2


@dataclass(frozen=True)
class Probe:
    """Probe samples: group (0 clean, 1 noisy, 2 test), row index in its split, labels."""

    group: np.ndarray
    index: np.ndarray
    label: np.ndarray
    noisy_label: np.ndarray

    def as_arrays(self) -> dict[str, np.ndarray]:
        return {"group": self.group, "index": self.index, "label": self.label,
                "noisy_label": self.noisy_label}


def select_probe(labels: NoisyLabels, y_test: np.ndarray, per_class: int, seed: int,
                 n_classes: int = 10) -> Probe:
    """Up to ``per_class`` samples per true class from clean train, noisy train and test."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))  # not the noise's stream
    groups, indices = [], []
    pools = {
        GROUP_CLEAN: (labels.original, ~labels.mask),
        GROUP_NOISY: (labels.original, labels.mask),
        GROUP_TEST: (np.asarray(y_test), np.ones(len(y_test), dtype=bool)),
    }
    for group, (true, allowed) in pools.items():
        for c in range(n_classes):
            pool = np.flatnonzero((true == c) & allowed)
            take = np.sort(rng.choice(pool, size=min(per_class, len(pool)), replace=False))
            groups.append(np.full(len(take), group))
            indices.append(take)
    group, index = np.concatenate(groups).astype(np.int64), np.concatenate(indices).astype(np.int64)
    is_train = group != GROUP_TEST
    label = np.where(is_train, labels.original[np.where(is_train, index, 0)],
                     np.asarray(y_test)[np.where(is_train, 0, index)])
    noisy_label = np.where(is_train, labels.noisy[np.where(is_train, index, 0)], label)
    return Probe(group=group, index=index, label=label.astype(np.int64),
                 noisy_label=noisy_label.astype(np.int64))


def input_statistics(images: np.ndarray) -> dict[str, np.ndarray]:
    """Brightness, contrast and per-channel means of uint8 (P, 32, 32, 3) images, on [0, 1]."""
    x = images.astype(np.float64) / 255.0
    return {
        "brightness": x.mean(axis=(1, 2, 3)),
        "contrast": x.reshape(len(x), -1).std(axis=1),
        "channel_mean": x.mean(axis=(1, 2)),
    }


def _class_means(acts: torch.Tensor, classes: torch.Tensor, select: torch.Tensor,
                 n_classes: int) -> torch.Tensor:
    """(n_classes, W) mean of ``acts`` rows with ``select`` by class; NaN for empty classes."""
    a, c = acts[select].double(), classes[select]
    sums = torch.zeros(n_classes, acts.shape[1], dtype=torch.float64, device=acts.device)
    sums.index_add_(0, c, a)
    counts = torch.bincount(c, minlength=n_classes).to(sums).unsqueeze(1)
    return sums / counts  # 0/0 gives NaN for empty classes


@torch.inference_mode()
def take_snapshot(model: MLP, x_probe: torch.Tensor, probe: Probe, top_k: int,
                  n_classes: int = 10) -> dict[str, np.ndarray]:
    """Activation statistics of every hidden layer on the probe set (keys in ``recording``)."""
    was_training = model.training
    model.eval()
    logits, acts = model.forward_with_activations(x_probe)
    model.train(was_training)
    device = x_probe.device
    group = torch.as_tensor(probe.group, device=device)
    label = torch.as_tensor(probe.label, device=device)
    noisy_label = torch.as_tensor(probe.noisy_label, device=device)
    out: dict[str, np.ndarray] = {"logits": logits.float().cpu().numpy()}
    for layer, (pre, post) in enumerate(zip(acts.pre, acts.post), start=1):
        pre, post = pre.float(), post.float()
        p = f"l{layer}_"
        means = {
            "mean_clean": _class_means(post, label, group == GROUP_CLEAN, n_classes),
            "mean_noisy": _class_means(post, label, group == GROUP_NOISY, n_classes),
            "mean_noisy_by_noisy": _class_means(post, noisy_label, group == GROUP_NOISY, n_classes),
            "mean_test": _class_means(post, label, group == GROUP_TEST, n_classes),
        }
        for key, value in means.items():
            out[p + key] = value.float().cpu().numpy()
        absmax = post.abs().amax(dim=0)
        flat = post.abs().flatten()
        nonzero = flat[flat > 0]
        k = min(top_k, post.shape[1])
        top_val, top_idx = torch.topk(absmax, k)
        out[p + "absmax"] = absmax.cpu().numpy()
        out[p + "pre_absmax"] = pre.abs().amax(dim=0).cpu().numpy()
        out[p + "median_abs"] = np.float32(flat.median().item())
        out[p + "median_abs_nonzero"] = np.float32(nonzero.median().item() if nonzero.numel() else 0.0)
        out[p + "top_idx"] = top_idx.cpu().numpy().astype(np.int64)
        out[p + "top_val"] = top_val.cpu().numpy()
        out[p + "top_act"] = post[:, top_idx].cpu().numpy()
        out[p + "top_pre"] = pre[:, top_idx].cpu().numpy()
    return out
