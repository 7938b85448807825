"""Four-way loss and accuracy over whole splits, from one forward pass per dataset."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@torch.inference_mode()
def per_sample_scores(model: nn.Module, x: torch.Tensor, labels: list[torch.Tensor],
                      batch_size: int = 4096) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per-sample cross-entropy and correctness against each label vector, one pass over x."""
    losses: list[list[torch.Tensor]] = [[] for _ in labels]
    correct: list[list[torch.Tensor]] = [[] for _ in labels]
    for start in range(0, len(x), batch_size):
        log_probs = F.log_softmax(model(x[start:start + batch_size]).float(), dim=1)
        pred = log_probs.argmax(dim=1)
        for i, y in enumerate(labels):
            yb = y[start:start + batch_size]
            losses[i].append(-log_probs.gather(1, yb.unsqueeze(1)).squeeze(1))
            correct[i].append(pred == yb)
    return [(torch.cat(lo), torch.cat(co)) for lo, co in zip(losses, correct)]


def four_way_metrics(model: nn.Module, x_train: torch.Tensor, y_noisy: torch.Tensor,
                     y_true: torch.Tensor, noisy_mask: torch.Tensor, x_test: torch.Tensor,
                     y_test: torch.Tensor, batch_size: int = 4096) -> dict[str, float]:
    """Mean loss and accuracy of the clean, noisy, noisy_true and test splits.

    ``noisy`` scores the relabelled training samples against the labels they were trained
    on; ``noisy_true`` scores the same samples against their original labels. An empty
    split gives NaN.
    """
    return four_way_evaluation(model, x_train, y_noisy, y_true, noisy_mask, x_test, y_test, batch_size)[0]


def four_way_evaluation(model: nn.Module, x_train: torch.Tensor, y_noisy: torch.Tensor,
                        y_true: torch.Tensor, noisy_mask: torch.Tensor, x_test: torch.Tensor,
                        y_test: torch.Tensor, batch_size: int = 4096) -> tuple[dict[str, float], np.ndarray]:
    """``four_way_metrics`` and the per-image correctness (bool, n_test) on the test set."""
    was_training = model.training
    model.eval()
    (loss_n, corr_n), (loss_t, corr_t) = per_sample_scores(model, x_train, [y_noisy, y_true], batch_size)
    [(loss_te, corr_te)] = per_sample_scores(model, x_test, [y_test], batch_size)
    model.train(was_training)
    clean = ~noisy_mask
    parts = {
        "clean": (loss_n[clean], corr_n[clean]),
        "noisy": (loss_n[noisy_mask], corr_n[noisy_mask]),
        "noisy_true": (loss_t[noisy_mask], corr_t[noisy_mask]),
        "test": (loss_te, corr_te),
    }
    stacked = torch.stack([torch.stack(_means(lo, co)) for lo, co in parts.values()]).cpu()
    out = {}
    for row, split in zip(stacked.tolist(), parts):
        out[f"{split}_loss"], out[f"{split}_acc"] = row
    return out, corr_te.cpu().numpy().astype(bool)


def _means(loss: torch.Tensor, correct: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if loss.numel() == 0:
        nan = torch.tensor(float("nan"), device=loss.device)
        return nan, nan
    return loss.double().mean(), correct.double().mean()
