"""k MLPs of equal shapes trained as one stacked computation, captured in a CUDA graph on CUDA.

Layout: layer l's weights of the k models are one (k, out, in) tensor and its biases one
(k, out) tensor; each model's own parameters become views of its slice, so evaluation,
snapshots and checkpoints go through the ordinary ``MLP`` modules unchanged.

One step, for a static batch size B: each model's mini-batch is gathered on the device by its
own permutation (row j of a (k, n) order tensor, read at a device-side position that the step
advances), the forward pass multiplies with ``torch.baddbmm``, each model's mean cross-entropy
is summed over the models (so each gradient is its own model's), one backward pass, then Adam
with one parameter group per model: fused Adam takes one learning rate per group (a scalar, not
a tensor per slice), so the models may differ in ``lr`` and ``weight_decay``, and a schedule
sets each group's rate between epochs. The groups' gradients are views of the stacked ones.

On CUDA the whole step (gather, forward, backward, Adam, loss accumulation, advance of the
position) is captured in a CUDA graph, with fused, capturable Adam and each learning rate a
device tensor, so a schedule changes it without a new capture. An epoch of n samples replays
the batch-B graph n // B times and, if n % B > 0, a second graph captured for the remainder
size: the last partial batch's loss is the mean over its own samples, exactly as in
the per-model engine (``engine.Engine``). Elsewhere (and on CUDA with ``graphs=False``) the same step runs
eagerly, which is how its numerics are tested on the CPU. Results match k separate runs to
floating-point rounding, not bit for bit (the per-model engine keeps the bit-identical CPU path).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from ddd_support.models import MLP
from ddd_support.train.optim import load_run_states, make_adam
from ddd_support.train.schedule import set_group_lr

#: Warm-up steps before capture (cuBLAS handles, autograd and allocator state); undone afterwards.
WARMUP_STEPS = 2


class StackedTrainer:
    """Train k same-shaped MLPs as one stacked computation (a CUDA graph on CUDA).

    ``lrs`` and ``weight_decays``: one per model. ``optimizer_states``: optional per-model Adam
    state dicts' ``state`` parts, in a lone run's checkpoint format (``optim``; resume).
    ``graphs``: capture CUDA graphs (default: on CUDA; an error elsewhere).
    """

    def __init__(self, models: Sequence[MLP], device: torch.device, lrs: Sequence[float],
                 weight_decays: Sequence[float] | None = None, amp_dtype: torch.dtype | None = None,
                 graphs: bool | None = None, optimizer_states: Sequence[dict] | None = None) -> None:
        if not models:
            raise ValueError("StackedTrainer needs at least one model")
        shapes = [tuple(p.shape for p in m.parameters()) for m in models]
        if any(s != shapes[0] for s in shapes):
            raise ValueError("the models of a StackedTrainer must have equal shapes")
        self.models, self.k, self.device = list(models), len(models), torch.device(device)
        self.graphs = self.device.type == "cuda" if graphs is None else bool(graphs)
        if self.graphs and self.device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA device, not {self.device}")
        self.amp_dtype = amp_dtype
        self.params = [list(m.parameters()) for m in self.models]
        with torch.no_grad():
            self.stacked = [torch.stack([p.detach() for p in group]).to(self.device).requires_grad_()
                            for group in zip(*self.params)]
            for j, params in enumerate(self.params):  # each model now reads and shows its slice
                for p, s in zip(params, self.stacked):
                    p.data = s.data[j]
        weight_decays = list(weight_decays) if weight_decays is not None else [0.0] * self.k
        if len(lrs) != self.k or len(weight_decays) != self.k:
            raise ValueError(f"need {self.k} learning rates and weight decays")
        groups = [{"params": params, "lr": self._lr_value(lr), "weight_decay": float(wd)}
                  for params, lr, wd in zip(self.params, lrs, weight_decays)]
        self.opt = make_adam(groups, self.device, capturable=self.graphs)
        load_run_states(self.opt, self.params, optimizer_states or [None] * self.k, fill_missing=True)
        self._bound: tuple | None = None
        self._captured: dict[int, torch.cuda.CUDAGraph] = {}

    # ------------------------------------------------------------------ optimizer state
    def _lr_value(self, lr: float) -> float | torch.Tensor:
        lr = float(lr)
        return torch.tensor(lr, dtype=torch.float32, device=self.device) if self.graphs else lr

    def lr(self, j: int) -> float:
        """Model j's current learning rate."""
        return float(self.opt.param_groups[j]["lr"])

    def set_lrs(self, lrs: Sequence[float]) -> None:
        """One learning rate per model, from the next step on (no new capture needed)."""
        if len(lrs) != self.k:
            raise ValueError(f"need {self.k} learning rates, got {len(lrs)}")
        for group, lr in zip(self.opt.param_groups, lrs):
            set_group_lr(group, float(lr))

    # ------------------------------------------------------------------ the step
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (k, B, classes) of inputs (k, B, features)."""
        weights, biases = self.stacked[0::2], self.stacked[1::2]
        for w, b in zip(weights[:-1], biases[:-1]):
            x = F.relu(torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2)))
        return torch.baddbmm(biases[-1].unsqueeze(1), x, weights[-1].transpose(1, 2))

    def _bind(self, x: torch.Tensor, ys: torch.Tensor, batch_size: int) -> None:
        """Static buffers for data ``x`` (n, features), labels ``ys`` (k, n) and the batch size."""
        key = (x.data_ptr(), tuple(x.shape), x.dtype, ys.data_ptr(), tuple(ys.shape), batch_size)
        if key == self._bound:
            return
        n = x.shape[0]
        if ys.shape != (self.k, n):
            raise ValueError(f"labels must be (k={self.k}, n={n}), got {tuple(ys.shape)}")
        self.x, self.ys = x, ys
        self.batch_size = batch_size
        self.n_full, self.remainder = divmod(n, batch_size)
        self.orders = torch.zeros(self.k, n, dtype=torch.long, device=self.device)
        self.position = torch.zeros((), dtype=torch.long, device=self.device)
        self.loss_sum = torch.zeros(self.k, dtype=torch.float32, device=self.device)
        self.columns = torch.arange(batch_size, device=self.device)
        self._captured = {}
        self._bound = key
        if self.graphs:
            self._capture()

    def _sizes(self) -> list[int]:
        return ([self.batch_size] if self.n_full else []) + ([self.remainder] if self.remainder else [])

    def _zero_grad(self) -> None:
        for s in self.stacked:
            s.grad = None

    def _step(self, size: int) -> None:
        """One step on the ``size`` samples at ``position`` of each model's order (capturable)."""
        idx = self.orders.gather(1, (self.position + self.columns[:size]).expand(self.k, size))
        xb = self.x.index_select(0, idx.reshape(-1)).view(self.k, size, -1)
        yb = self.ys.gather(1, idx)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None,
                            cache_enabled=False):
            logits = self.forward(xb)
        per_sample = F.cross_entropy(logits.float().flatten(0, 1), yb.flatten(), reduction="none")
        losses = per_sample.view(self.k, size).mean(dim=1)
        losses.sum().backward()
        for params, j in zip(self.params, range(self.k)):
            for p, s in zip(params, self.stacked):
                p.grad = s.grad[j]
        self.opt.step()
        with torch.no_grad():
            self.loss_sum += losses.detach()
            self.position += size

    def _capture(self) -> None:
        """Warm up on a side stream, capture one graph per batch size, undo the warm-up's updates."""
        saved_params = [s.detach().clone() for s in self.stacked]
        saved_state = {p: {key: v.clone() for key, v in st.items()} for p, st in self.opt.state.items()}
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_STEPS):
                for size in self._sizes():
                    self.position.zero_()
                    self._zero_grad()
                    self._step(size)
        torch.cuda.current_stream().wait_stream(side)
        for size in self._sizes():
            self.position.zero_()
            self._zero_grad()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self._step(size)
            self._captured[size] = graph
        with torch.no_grad():
            for s, saved in zip(self.stacked, saved_params):
                s.copy_(saved)
            for p, st in saved_state.items():
                for key, v in st.items():
                    self.opt.state[p][key].copy_(v)
        self.position.zero_()
        self.loss_sum.zero_()

    def train_epoch(self, x: torch.Tensor, ys: torch.Tensor, orders: torch.Tensor,
                    batch_size: int) -> list[float]:
        """One epoch of every model: model j visits ``x`` in the order ``orders[j]`` with labels
        ``ys[j]``; returns each model's mean mini-batch loss (one synchronisation)."""
        self._bind(x, ys, batch_size)
        self.orders.copy_(orders, non_blocking=True)
        self.position.zero_()
        self.loss_sum.zero_()
        for m in self.models:
            m.train()
        for size in [self.batch_size] * self.n_full + ([self.remainder] if self.remainder else []):
            if self.graphs:
                self._captured[size].replay()
            else:
                self._zero_grad()
                self._step(size)
        n_batches = self.n_full + (1 if self.remainder else 0)
        return [t / max(n_batches, 1) for t in self.loss_sum.tolist()]
