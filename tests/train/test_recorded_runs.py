"""The training driver reproduces, bit for bit, run directories recorded before it was rewritten.

``recorded_runs.json`` holds digests of runs trained by the code of commit 049d059 (three
training loops: one per run, one per batch of seeds, one stacked) on the synthetic data of
``tests.conftest``: the deterministic metrics columns, the per-image test correctness, the
final checkpoint's weights and Adam state, and every snapshot array recorded then (arrays the
schema has gained since, ``ADDED_SINCE``, are left out). The same configurations trained now
must give the same digests. Floating-point results depend on the CPU's instruction set and
the torch version, so the digests are compared only where those match the recording's.

    python -m tests.train.test_recorded_runs      # re-record (only when a change is meant to alter results)
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ddd_support.runs.checkpoints import load_checkpoint
from ddd_support.runs.schema import METRIC_COLUMNS, TIMING_COLUMNS

from tests.conftest import synthetic_cifar, tiny_config

RECORDED = Path(__file__).with_name("recorded_runs.json")
DETERMINISTIC = [c for c in METRIC_COLUMNS if c not in TIMING_COLUMNS]
#: Snapshot arrays added after the recording: the class means and counts of unseen images.
ADDED_SINCE = ("_unseen",)
#: Each case: how it is trained, and the configs (one run, or a batch of runs trained together).
CASES = {
    "single": {"batched": False, "configs": [dict(seed=0, epochs=4)]},
    "single_mlp5_cosine": {"batched": False, "configs": [dict(model="mlp5", seed=1, epochs=3, lr_schedule="cosine")]},
    "batched_seeds": {"batched": True, "configs": [dict(seed=0, epochs=3), dict(seed=3, epochs=3)]},
    "batched_lr_noise": {"batched": True, "configs": [dict(seed=2, epochs=3, lr=3e-3, noise_rate=0.1),
                                                      dict(seed=5, epochs=3, lr=1e-3, noise_rate=0.3)]},
}


def platform_key() -> str:
    return f"torch {torch.__version__.split('+')[0]}, cpu {torch.backends.cpu.get_cpu_capability()}"


def _sha(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.hexdigest()


def run_digest(run_dir: Path) -> dict[str, str]:
    """Digests of everything a run computes (not its wall times or provenance)."""
    metrics = pd.read_csv(run_dir / "metrics.csv")[DETERMINISTIC].to_csv(index=False).encode()
    with np.load(run_dir / "test_correct.npz") as z:
        correct = z["bits"].tobytes()
    ckpt = load_checkpoint(run_dir)
    weights = b"".join(v.numpy().tobytes() for _, v in sorted(ckpt["model"].items()))
    adam = b"".join(t.numpy().tobytes() for _, s in sorted(ckpt["optimizer"]["state"].items())
                    for _, t in sorted(s.items()) if isinstance(t, torch.Tensor))
    snaps = []
    for f in sorted((run_dir / "snapshots").glob("*.npz")):
        with np.load(f) as z:
            snaps.append(b"".join(f.name.encode() + k.encode() + np.ascontiguousarray(z[k]).tobytes()
                                  for k in sorted(z.files) if not k.endswith(ADDED_SINCE)))
    return {"metrics": _sha(metrics), "test_correct": _sha(correct), "weights": _sha(weights),
            "adam": _sha(adam), "snapshots": _sha(*snaps)}


def train_case(case: dict, out: Path) -> list[Path]:
    from ddd_support.train.driver import train_runs

    cfgs = [tiny_config(**c) for c in case["configs"]]
    arrays = synthetic_cifar()
    if case["batched"]:
        return train_runs(cfgs, out, arrays)
    return [train_runs([c], out, arrays)[0] for c in cfgs]


@pytest.mark.parametrize("name", sorted(CASES))
def test_training_reproduces_the_runs_recorded_before_the_driver_was_unified(name, tmp_path):
    recorded = json.loads(RECORDED.read_text())
    if recorded["platform"] != platform_key():
        pytest.skip(f"digests recorded on {recorded['platform']}, this is {platform_key()}")
    got = [run_digest(d) for d in train_case(CASES[name], tmp_path)]
    assert got == recorded["cases"][name]


def record() -> None:
    import tempfile

    torch.set_num_threads(2)
    cases = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, case in sorted(CASES.items()):
            cases[name] = [run_digest(d) for d in train_case(case, Path(tmp) / name)]
    RECORDED.write_text(json.dumps({"platform": platform_key(), "cases": cases}, indent=1) + "\n")
    print(f"recorded {len(cases)} cases in {RECORDED}", file=sys.stderr)


if __name__ == "__main__":
    record()
