"""Checkpoints written off the training loop's critical path.

``AsyncCheckpointer.submit(state, save)`` copies every tensor of a (nested) state dict to CPU
memory (page-locked on CUDA, queued on the current stream so the copy sees the values of this
moment and the next steps wait only for the copy), then calls ``save(copy)`` in a background
thread. One write is in flight at a time: ``submit`` first waits for the previous one, and
``wait()`` (at the end of a run) blocks until the last is written. An exception raised by
``save`` is raised again in the caller, at the next ``submit`` or ``wait``. The thread is not a
daemon, so a process that stops (even on Ctrl-C) finishes the write in flight before it exits;
an atomic ``save`` (as ``runs.checkpoints.save_checkpoint``) never leaves a partial file either way.
With ``background=False`` (e.g. on the CPU, where a checkpoint is cheap next to an epoch)
``submit`` simply calls ``save(state)`` in the caller: no copy, exceptions at once.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

import torch


def to_host(state: Any, pin: bool) -> Any:
    """A copy of ``state`` with every tensor copied to CPU memory (pinned if ``pin``), structure kept.

    Device tensors are copied asynchronously; synchronise (``torch.cuda.Event``) before reading.
    """
    if isinstance(state, torch.Tensor):
        t = state.detach()
        out = torch.empty(t.shape, dtype=t.dtype, device="cpu", pin_memory=pin and t.device.type == "cuda")
        out.copy_(t, non_blocking=pin and t.device.type == "cuda")
        return out
    if isinstance(state, dict):
        return type(state)((k, to_host(v, pin)) for k, v in state.items())
    if isinstance(state, (list, tuple)):
        return type(state)(to_host(v, pin) for v in state)
    return state


class AsyncCheckpointer:
    """Write states with a given ``save`` function in a background thread, one at a time.

    ``pin``: copy device tensors into page-locked memory (default: when CUDA is available).
    ``background``: False calls ``save`` in the caller instead (same interface, no thread).
    """

    def __init__(self, pin: bool | None = None, background: bool = True) -> None:
        self.pin = torch.cuda.is_available() if pin is None else bool(pin)
        self.background = background
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def submit(self, state: dict, save: Callable[[dict], None]) -> None:
        """Copy ``state`` now and call ``save(copy)`` in the background (after the previous write)."""
        self.wait()
        if not self.background:
            save(state)
            return
        host = to_host(state, self.pin)
        ready = None
        if self.pin and torch.cuda.is_available():
            ready = torch.cuda.Event()
            ready.record()
        self._thread = threading.Thread(target=self._write, args=(save, host, ready),
                                        name="checkpoint-writer", daemon=False)
        self._thread.start()

    def _write(self, save: Callable[[dict], None], host: dict, ready: "torch.cuda.Event | None") -> None:
        try:
            if ready is not None:
                ready.synchronize()
            save(host)
        except BaseException as exc:  # raised again in the caller
            self._error = exc

    @property
    def busy(self) -> bool:
        """True while a write is in flight."""
        return self._thread is not None and self._thread.is_alive()

    def wait(self) -> None:
        """Block until the write in flight (if any) is done; raise its exception, if it had one."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def __enter__(self) -> "AsyncCheckpointer":
        return self

    def __exit__(self, *exc_info) -> None:
        if exc_info[0] is None:
            self.wait()
        elif self._thread is not None:  # already failing: finish the write, keep the first error
            self._thread.join()
            self._thread = None
