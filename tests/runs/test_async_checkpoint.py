import threading

import pytest
import torch

from ddd_support.runs.async_checkpoint import AsyncCheckpointer, to_host
from ddd_support.runs.checkpoints import load_checkpoint, save_checkpoint


def test_the_saved_state_is_the_state_at_submit_time():
    weights = torch.ones(3)
    saved = []
    with AsyncCheckpointer(pin=False) as writer:
        writer.submit({"model": {"w": weights}, "epoch": 4, "groups": [{"lr": 1e-3}]}, saved.append)
        weights.add_(1.0)  # training goes on while the write is in flight
    [state] = saved
    assert torch.equal(state["model"]["w"], torch.ones(3)) and state["epoch"] == 4
    assert state["groups"] == [{"lr": 1e-3}]


def test_one_write_at_a_time_in_order():
    release, order = threading.Event(), []

    def slow(state):
        release.wait(5)
        order.append(state["n"])

    writer = AsyncCheckpointer(pin=False)
    writer.submit({"n": 1}, slow)
    assert writer.busy
    threading.Timer(0.2, release.set).start()
    writer.submit({"n": 2}, lambda s: order.append(s["n"]))  # waits for the first
    writer.wait()
    assert order == [1, 2] and not writer.busy


def test_a_failed_write_is_raised_in_the_caller():
    def broken(state):
        raise OSError("disk full")

    writer = AsyncCheckpointer(pin=False)
    writer.submit({"x": torch.zeros(1)}, broken)
    with pytest.raises(OSError, match="disk full"):
        writer.wait()
    writer.wait()  # raised once


def test_in_the_foreground_save_runs_in_the_caller_on_the_state_itself():
    state, seen = {"w": torch.ones(2)}, []
    writer = AsyncCheckpointer(background=False)
    writer.submit(state, lambda s: seen.append((s, threading.current_thread())))
    assert seen == [(state, threading.main_thread())] and not writer.busy
    with pytest.raises(KeyboardInterrupt):
        writer.submit(state, lambda s: (_ for _ in ()).throw(KeyboardInterrupt()))


def test_cpu_tensors_are_copied_not_pinned():
    t = torch.arange(4.0)
    out = to_host({"a": [t, (t,)]}, pin=True)
    copy = out["a"][0]
    assert torch.equal(copy, t) and copy.data_ptr() != t.data_ptr() and not copy.is_pinned()
    assert isinstance(out["a"][1], tuple)


def test_checkpoints_written_in_the_background_load_back(tmp_path):
    model = torch.nn.Linear(3, 2)
    with AsyncCheckpointer(pin=False) as writer:
        for epoch in (1, 2, 3):
            writer.submit({"model": model.state_dict()}, lambda s, e=epoch: save_checkpoint(tmp_path, s, e))
            with torch.no_grad():
                model.weight.add_(1.0)
    state = load_checkpoint(tmp_path)
    assert state["epoch"] == 3
    torch.testing.assert_close(state["model"]["weight"], model.weight.detach() - 1.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_tensors_are_copied_to_pinned_memory_before_later_kernels_change_them():
    t = torch.ones(1 << 20, device="cuda")
    saved = []
    with AsyncCheckpointer(pin=True) as writer:
        writer.submit({"t": t}, saved.append)
        t.mul_(3.0)
    assert saved[0]["t"].is_pinned() and torch.equal(saved[0]["t"], torch.ones(1 << 20))
