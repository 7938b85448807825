"""Fully connected ReLU networks (MLP3, MLP5, MLP7) that can return their hidden activations."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ddd_support.config import MODEL_DEPTHS, TrainConfig, model_widths
from ddd_support.errors import ConfigError

INPUT_DIM = 3 * 32 * 32
N_CLASSES = 10


@dataclass
class Activations:
    """Hidden activations of one forward pass, one (batch, width) tensor per hidden layer."""

    pre: list[torch.Tensor]   # before ReLU
    post: list[torch.Tensor]  # after ReLU (what the analyses use)


class MLP(nn.Module):
    """Linear -> ReLU blocks, then a linear classifier head.

    Each ReLU is its own module (``model.relus[i]``) so a forward hook can read or
    replace one hidden layer's output (used by the ablation test).
    """

    def __init__(self, widths: tuple[int, ...] | list[int], input_dim: int = INPUT_DIM,
                 n_classes: int = N_CLASSES) -> None:
        super().__init__()
        if len(widths) == 0 or min(widths) < 1:
            raise ConfigError(f"widths must be a non-empty list of positive ints, got {widths}")
        dims = [input_dim, *widths]
        self.widths = tuple(int(w) for w in widths)
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.relus = nn.ModuleList(nn.ReLU() for _ in widths)
        self.head = nn.Linear(dims[-1], n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for linear, relu in zip(self.linears, self.relus):
            x = relu(linear(x))
        return self.head(x)

    def forward_with_activations(self, x: torch.Tensor) -> tuple[torch.Tensor, Activations]:
        """Logits and every hidden layer's pre- and post-ReLU activations, in one pass."""
        pre, post = [], []
        for linear, relu in zip(self.linears, self.relus):
            z = linear(x)
            x = relu(z)
            pre.append(z)
            post.append(x)
        return self.head(x), Activations(pre=pre, post=post)


def build_model(name: str, base_width: int = 512, widths: tuple[int, ...] | None = None) -> MLP:
    """MLP3 / MLP5 / MLP7 (2 / 4 / 6 hidden layers of base_width x 1 / 2 / 4), or custom widths."""
    if name not in MODEL_DEPTHS:
        raise ConfigError(f"unknown model {name!r}; valid models: {', '.join(MODEL_DEPTHS)}")
    return MLP(model_widths(name, base_width, widths))


def model_from_config(cfg: TrainConfig) -> MLP:
    """The model a config describes, initialised with the config's seed (PyTorch default init)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return MLP(cfg.widths)


def parameter_count(widths: tuple[int, ...] | list[int], input_dim: int = INPUT_DIM,
                    n_classes: int = N_CLASSES) -> int:
    """Number of weights and biases of an MLP with these hidden widths."""
    dims = [input_dim, *widths, n_classes]
    return sum(a * b + b for a, b in zip(dims[:-1], dims[1:]))
