"""Shared fixtures: small synthetic CIFAR-like data and tiny configurations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ddd_support.config import TrainConfig
from ddd_support.data.cifar import CLASSES, CifarArrays

REPO = Path(__file__).resolve().parents[1]
SHARED_CIFAR = REPO.parent / "shared" / "data" / "cifar10-images"


def synthetic_images(labels: np.ndarray, seed: int) -> np.ndarray:
    """uint8 images whose mean colour pattern depends on the class, plus noise: learnable."""
    rng = np.random.default_rng(seed)
    patterns = np.random.default_rng(1234).integers(40, 215, size=(10, 1, 1, 3))
    noise = rng.normal(0, 40, size=(len(labels), 32, 32, 3))
    return np.clip(patterns[labels] + noise, 0, 255).astype(np.uint8)


def synthetic_cifar() -> CifarArrays:
    """300 training and 100 test images of the ten classes, learnable (``synthetic_images``)."""
    y_train = np.repeat(np.arange(10), 30)
    y_test = np.repeat(np.arange(10), 10)
    return CifarArrays(synthetic_images(y_train, 0), y_train, synthetic_images(y_test, 1), y_test,
                       source="synthetic")


@pytest.fixture(scope="session")
def synthetic_arrays() -> CifarArrays:
    return synthetic_cifar()


@pytest.fixture(scope="session")
def finished_run(trained_run) -> Path:
    """One complete run of ``tiny_config()`` on ``synthetic_arrays``, trained once per test session:
    tests read it and never change it (``finished_run_copy`` gives a private copy to change)."""
    return trained_run()


@pytest.fixture
def finished_run_copy(trained_run_copy) -> Path:
    """A private copy of ``finished_run`` under ``tmp_path`` (same layout: ``tmp_path/test/mlp3/seed0``)."""
    return trained_run_copy()


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, synthetic_arrays):
    """``trained_run(**overrides)``: the run of ``tiny_config(**overrides)`` on ``synthetic_arrays``,
    trained once per test session and configuration (under ``<root>/test/<model>/seed<n>``). Tests
    read it and never change it; ``trained_run_copy`` gives a private copy to change."""
    from ddd_support.train.driver import train

    runs: dict[str, Path] = {}

    def get(**overrides) -> Path:
        key = json.dumps(tiny_config(**overrides).to_dict(), sort_keys=True)
        if key not in runs:
            torch.set_num_threads(2)
            runs[key] = train(tiny_config(**overrides), tmp_path_factory.mktemp("trained"), synthetic_arrays)
        return runs[key]

    return get


@pytest.fixture
def trained_run_copy(trained_run, tmp_path):
    """``trained_run_copy(out=tmp_path, **overrides)``: a private copy of ``trained_run(**overrides)`` under
    ``out`` (the same layout: ``out/test/<model>/seed<n>``), as if it had been trained there."""
    import shutil

    def copy(out: Path | None = None, **overrides) -> Path:
        run = trained_run(**overrides)
        root, out = run.parents[2], Path(out or tmp_path)
        shutil.copytree(root, out, dirs_exist_ok=True)
        return out / run.relative_to(root)

    return copy


@pytest.fixture(autouse=True)
def _deterministic_threads():
    torch.set_num_threads(2)
    yield


def tiny_config(**overrides) -> TrainConfig:
    values = dict(profile="test", model="mlp3", seed=0, base_width=16, epochs=6, batch_size=32,
                  lr=1e-3, snapshot_dense_until=2, snapshot_per_decade=3, probe_per_class=3,
                  top_k=3, checkpoint_every=1, progress=False, device="cpu")
    values.update(overrides)
    return TrainConfig(**values)


def write_image_folder(root: Path, per_class: int = 2, size: int = 32, classes=CLASSES) -> Path:
    """A tiny ImageFolder tree of PNG files (train and test)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in classes:
            folder = root / split / c
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:04d}.png")
    return root


@pytest.fixture
def image_root(tmp_path, monkeypatch):
    """A tiny image-folder CIFAR-10 as ``DDD_DATA_ROOT``, with its own decoded-array cache."""
    root = write_image_folder(tmp_path / "imgs", per_class=4)
    monkeypatch.setenv("DDD_DATA_ROOT", str(root))
    monkeypatch.setenv("DDD_CACHE_DIR", str(tmp_path / "cache"))
    return root


def interrupt_after_checkpoint(monkeypatch, cfg, out, arrays, epoch: int) -> None:
    """Run ``cfg`` and stop it (KeyboardInterrupt) right after the checkpoint of ``epoch``."""
    from ddd_support.runs import checkpoints
    from ddd_support.train.driver import train

    real_save = checkpoints.save_checkpoint

    def save_then_stop(run_dir, state, saved_epoch):
        real_save(run_dir, state, saved_epoch)
        if saved_epoch == epoch:
            raise KeyboardInterrupt

    monkeypatch.setattr("ddd_support.runs.recorder.save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, out, arrays)
    monkeypatch.undo()


def epochs_alone(model, cfg: TrainConfig, x, y, orders, schedule: bool = False, first_epoch: int = 1,
                 optimizer_state: dict | None = None, batch_size: int | None = None) -> list[float]:
    """``model`` trained alone (the per-model engine, a group of one) for one epoch per order in
    ``orders``; with ``schedule`` each epoch gets ``cfg``'s scheduled rate. Returns the epoch losses."""
    from ddd_support.train.engine import Engine

    engine = Engine([model], [cfg], x.device, [optimizer_state], stacked=False)
    losses = []
    for epoch, order in enumerate(orders, start=first_epoch):
        if schedule:
            engine.set_epoch(epoch)
        losses += engine.train_epoch(x, y[None], order[None].to(x.device), batch_size or cfg.batch_size)
    return losses


@pytest.fixture
def torch_settings_kept():
    """Restores torch's thread count and matmul precision flags after a test that runs a benchmark's
    ``main`` in this process (benchmarks set them for their own measurements)."""
    threads = torch.get_num_threads()
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    precision = torch.get_float32_matmul_precision()
    yield
    torch.set_num_threads(threads)
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    torch.set_float32_matmul_precision(precision)
