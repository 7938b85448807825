"""The usual PyTorch loop, as peers write it: a per-sample Dataset, a DataLoader, one eval loop per split.

Data go through ``PIL.Image`` + ``transforms.ToTensor()`` + ``Normalize`` per sample, exactly
as ``torchvision.datasets.CIFAR10.__getitem__`` does with its in-memory uint8 array, batched
by ``DataLoader(shuffle=True)``; the optimizer is ``torch.optim.Adam`` with its defaults; the
four splits are scored by four evaluation loops with ``torch.no_grad()``.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms


class ArrayImageDataset(Dataset):
    """uint8 (N, 32, 32, 3) images and int labels, decoded per item like torchvision's CIFAR10."""

    def __init__(self, images: np.ndarray, targets: np.ndarray, transform) -> None:
        self.images, self.targets, self.transform = images, [int(t) for t in targets], transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.images[i])), self.targets[i]


def make_loaders(x_train_u8: np.ndarray, y_noisy: np.ndarray, y_true: np.ndarray, noisy_mask: np.ndarray,
                 x_test_u8: np.ndarray, y_test: np.ndarray, mean, std, batch_size: int,
                 workers: int = 0) -> dict[str, DataLoader]:
    """The training loader (noisy labels, shuffled) and one evaluation loader per split."""
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(list(mean), list(std))])
    clean = ~noisy_mask

    def loader(x, y, shuffle):
        return DataLoader(ArrayImageDataset(x, y, tf), batch_size=batch_size, shuffle=shuffle,
                          num_workers=workers)

    return {
        "train": loader(x_train_u8, y_noisy, True),
        "clean": loader(x_train_u8[clean], y_true[clean], False),
        "noisy": loader(x_train_u8[noisy_mask], y_noisy[noisy_mask], False),
        "noisy_true": loader(x_train_u8[noisy_mask], y_true[noisy_mask], False),
        "test": loader(x_test_u8, y_test, False),
    }


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader,
                device: torch.device) -> float:
    """One epoch of the textbook loop; returns the mean batch loss."""
    model.train()
    running, batches = 0.0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x.flatten(1)), y)
        loss.backward()
        optimizer.step()
        running += loss.item()
        batches += 1
    return running / max(batches, 1)


def evaluate(model: nn.Module, loader: DataLoader, device: torch.device) -> tuple[float, float]:
    """Mean loss and accuracy over one split."""
    model.eval()
    loss_sum, correct, n = 0.0, 0, 0
    with torch.no_grad():
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            out = model(x.flatten(1))
            loss_sum += F.cross_entropy(out, y, reduction="sum").item()
            correct += (out.argmax(1) == y).sum().item()
            n += len(y)
    return loss_sum / max(n, 1), correct / max(n, 1)


def timed_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, loaders: dict[str, DataLoader],
                device: torch.device) -> tuple[float, float]:
    """Seconds of one training epoch and of the four evaluation loops after it."""
    t0 = time.perf_counter()
    train_epoch(model, optimizer, loaders["train"], device)
    t1 = time.perf_counter()
    for split in ("clean", "noisy", "noisy_true", "test"):
        evaluate(model, loaders[split], device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return t1 - t0, time.perf_counter() - t1
