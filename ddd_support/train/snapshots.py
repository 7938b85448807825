"""The fixed probe set and the activation snapshots (schema in ``recording``).

A snapshot has two parts. Class means of every hidden layer over *all* training and test
images, per group (``GROUP_MEANS``), which the separation analysis compares; and, on the
fixed probe set, per-neuron and per-image magnitudes, the top neurons' and some random
neurons' activations, which the large-activation analysis reads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ddd_support.models import MLP
from ddd_support.data.noise import NoisyLabels

GROUP_CLEAN, GROUP_NOISY, GROUP_TEST = 0, 1, 2
#: Clean-half membership in ``labels.npz`` ``clean_half``: not drawn, half A, half B.
HALF_NONE, HALF_A, HALF_B = 0, 1, 2
#: The class-mean groups of a snapshot (``l{l}_mean_<group>``), each over all its images.
GROUP_MEANS: tuple[str, ...] = ("clean", "clean_a", "clean_b", "noisy", "noisy_by_noisy", "test", "unseen")
#: Random neurons per layer whose probe activations every snapshot keeps (the controls).
N_RANDOM_NEURONS = 16
#: Number of principal components of the training images kept as probe input statistics.
N_COMPONENTS = 5


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


def split_clean_halves(labels: NoisyLabels, seed: int, n_classes: int = 10) -> np.ndarray:
    """Two disjoint random halves of each class's clean images, each the size of the class's noisy group.

    Returns ``clean_half`` (N,): ``HALF_A``, ``HALF_B`` or ``HALF_NONE`` per training image.
    Class c gets m_c = min(n_noisy_c, floor(n_clean_c / 2)) images in each half, so the
    clean-vs-clean cosine of the halves has the sampling noise of the clean-vs-noisy one.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2]))
    half = np.full(len(labels.original), HALF_NONE, dtype=np.int8)
    for c in range(n_classes):
        clean = rng.permutation(np.flatnonzero((labels.original == c) & ~labels.mask))
        m = min(int(np.sum((labels.original == c) & labels.mask)), len(clean) // 2)
        half[clean[:m]], half[clean[m:2 * m]] = HALF_A, HALF_B
    return half


def choose_unseen(labels: NoisyLabels, pool_classes: np.ndarray, seed: int, n_classes: int = 10) -> np.ndarray:
    """Rows of an unseen pool (images the run never trains on) with as many images per class as
    the class's noisy group (fewer where the pool has fewer), so that their class means carry the
    sampling noise of the noisy images' means. Sorted row indices into ``pool_classes``."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 4]))
    pool_classes = np.asarray(pool_classes)
    chosen = []
    for c in range(n_classes):
        pool = np.flatnonzero(pool_classes == c)
        m = min(int(np.sum((labels.original == c) & labels.mask)), len(pool))
        chosen.append(rng.choice(pool, size=m, replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def choose_random_neurons(widths: tuple[int, ...], count: int, seed: int) -> list[np.ndarray]:
    """``count`` random neurons per layer (sorted), fixed for a run: the controls of the top neuron."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 3]))
    return [np.sort(rng.choice(w, size=min(count, w), replace=False)).astype(np.int64) for w in widths]


def input_statistics(images: np.ndarray, components: np.ndarray | None = None,
                     pixel_mean: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Brightness, contrast, per-channel means and principal-component scores of uint8 (P, 32, 32, 3) images.

    Pixels are on [0, 1]. With ``components`` (K, 3072) and ``pixel_mean`` (3072,) from
    ``principal_components``, ``pc`` (P, K) holds each image's scores on them.
    """
    x = images.astype(np.float64) / 255.0
    out = {
        "brightness": x.mean(axis=(1, 2, 3)),
        "contrast": x.reshape(len(x), -1).std(axis=1),
        "channel_mean": x.mean(axis=(1, 2)),
    }
    if components is not None:
        out["pc"] = (x.reshape(len(x), -1) - pixel_mean) @ components.T
    return out


def principal_components(images: np.ndarray, k: int = N_COMPONENTS, max_images: int = 2000,
                         seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` leading principal directions (k, 3072) of uint8 images on [0, 1] and the pixel mean.

    Computed on at most ``max_images`` images drawn with ``seed``; each direction's sign is
    fixed so that its largest-magnitude loading is positive.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 4]))
    take = np.sort(rng.choice(len(images), size=min(max_images, len(images)), replace=False))
    x = images[take].reshape(len(take), -1).astype(np.float64) / 255.0
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    comps = vt[:k]
    signs = np.sign(comps[np.arange(len(comps)), np.abs(comps).argmax(axis=1)])
    return comps * signs[:, None], mean


@torch.inference_mode()
def group_class_means(model: MLP, x: torch.Tensor, groups: dict[str, tuple[torch.Tensor, torch.Tensor]],
                      batch_size: int = 4096, n_classes: int = 10
                      ) -> tuple[dict[str, list[np.ndarray]], dict[str, np.ndarray]]:
    """Per group and hidden layer, the (n_classes, W) mean post-ReLU activation of ``x``'s rows by class.

    ``groups`` maps a name to (classes (N,), select (N,) bool). Returns the means (NaN for a
    class without images) and the image counts (n_classes,) of each group, in one pass over ``x``.
    """
    was_training = model.training
    model.eval()
    sums = {g: [torch.zeros(n_classes, w, dtype=torch.float64, device=x.device) for w in model.widths]
            for g in groups}
    for start in range(0, len(x), batch_size):
        _, acts = model.forward_with_activations(x[start:start + batch_size])
        for name, (classes, select) in groups.items():
            cls, sel = classes[start:start + batch_size], select[start:start + batch_size]
            for layer, post in enumerate(acts.post):
                sums[name][layer].index_add_(0, cls[sel], post[sel].double())
    model.train(was_training)
    counts = {name: torch.bincount(classes[select], minlength=n_classes).cpu().numpy()
              for name, (classes, select) in groups.items()}
    with np.errstate(invalid="ignore", divide="ignore"):  # 0/0 gives NaN for empty classes
        means = {name: [(s.cpu().numpy() / counts[name][:, None]).astype(np.float32) for s in sums[name]]
                 for name in groups}
    return means, counts


@torch.inference_mode()
def probe_statistics(model: MLP, x_probe: torch.Tensor, top_k: int,
                     random_neurons: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Per-neuron and per-image magnitudes of every hidden layer on the probe set (keys in ``recording``)."""
    was_training = model.training
    model.eval()
    logits, acts = model.forward_with_activations(x_probe)
    model.train(was_training)
    out: dict[str, np.ndarray] = {"logits": logits.float().cpu().numpy()}
    for layer, (pre, post) in enumerate(zip(acts.pre, acts.post), start=1):
        pre, post = pre.float(), post.float()
        p = f"l{layer}_"
        mag = post.abs()
        absmax = mag.amax(dim=0)
        flat = mag.flatten()
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
        img_top, img_arg = mag.max(dim=1)
        masked = torch.where(mag > 0, mag, torch.full_like(mag, float("nan")))
        out[p + "img_top"] = img_top.cpu().numpy()
        out[p + "img_argmax"] = img_arg.cpu().numpy().astype(np.int64)
        out[p + "img_median_nonzero"] = masked.nanmedian(dim=1).values.nan_to_num(0.0).cpu().numpy()
        rand = torch.as_tensor(random_neurons[layer - 1], device=post.device)
        out[p + "rand_idx"] = random_neurons[layer - 1]
        out[p + "rand_act"] = post[:, rand].cpu().numpy()
    return out
