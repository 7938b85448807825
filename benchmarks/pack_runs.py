"""Pack run directories' small artifacts (no checkpoints) into at most a few files of bounded size.

    python benchmarks/pack_runs.py RUNS_ROOT OUT_DIR [--max-files 6] [--max-mib 56] [--part-mib 15]

One ``runs_<profile>_<model>.tar.gz`` per model (every seed), split into ``.partNN`` files
above ``--part-mib`` (join with ``cat``). If the whole would exceed ``--max-mib`` or
``--max-files``, snapshots of the largest model are thinned (never epoch 0, the dense epochs
or the last) and the ones left out are printed.
"""

from __future__ import annotations

import argparse
import io
import json
import tarfile
from pathlib import Path

KEEP = ("metrics.csv", "config.json", "probe.npz", "labels.npz")
MIB = 1 << 20


def artifacts(run_dir: Path) -> list[Path]:
    """The files of one run directory worth shipping: everything but checkpoints."""
    return [run_dir / name for name in KEEP if (run_dir / name).exists()] + \
        sorted((run_dir / "snapshots").glob("epoch_*.npz"))


def thinnable(run_dir: Path, files: list[Path]) -> list[Path]:
    """Snapshots that may be dropped: not epoch 0, not dense, not the last."""
    state = json.loads((run_dir / "config.json").read_text())
    dense = state["config"]["snapshot_dense_until"]
    snaps = [f for f in files if f.parent.name == "snapshots"]
    return [f for f in snaps[:-1] if int(f.stem.split("_")[1]) > dense]


def tar_bytes(root: Path, files: list[Path]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for f in files:
            tar.add(f, arcname=str(f.relative_to(root)))
    return buffer.getvalue()


def pack(root: Path, out: Path, max_files: int, max_mib: float, part_mib: float) -> list[Path]:
    """Write the packed files into ``out``; returns them. Thinned snapshots are printed."""
    runs: dict[str, dict[Path, list[Path]]] = {}
    for cfg in sorted(root.glob("*/*/seed*/config.json")):
        run = cfg.parent
        runs.setdefault(f"runs_{run.parent.parent.name}_{run.parent.name}", {})[run] = artifacts(run)
    part = int(part_mib * MIB)
    while True:
        blobs = {name: tar_bytes(root, [f for fs in group.values() for f in fs]) for name, group in runs.items()}
        n_files = sum(-(-len(b) // part) for b in blobs.values())
        if sum(len(b) for b in blobs.values()) <= max_mib * MIB and n_files <= max_files:
            break
        name = max(blobs, key=lambda k: len(blobs[k]))
        candidates = {run: thinnable(run, fs) for run, fs in runs[name].items()}
        if not any(candidates.values()):
            print(f"warning: {name} still too large after thinning; shipped as is")
            break
        for run, cands in candidates.items():
            drop = set(cands[::2])
            runs[name][run] = [f for f in runs[name][run] if f not in drop]
            for f in sorted(drop):
                print(f"left out to fit the size limit: {f.relative_to(root)}")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, blob in blobs.items():
        chunks = [blob[i:i + part] for i in range(0, len(blob), part)]
        for i, chunk in enumerate(chunks):
            path = out / (f"{name}.tar.gz" if len(chunks) == 1 else f"{name}.tar.gz.part{i:02d}")
            path.write_bytes(chunk)
            written.append(path)
    return written


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("root", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--max-files", type=int, default=6)
    p.add_argument("--max-mib", type=float, default=56.0)
    p.add_argument("--part-mib", type=float, default=15.0)
    a = p.parse_args()
    for path in pack(a.root, a.out, a.max_files, a.max_mib, a.part_mib):
        print(f"{path} {path.stat().st_size / MIB:.1f} MiB")


if __name__ == "__main__":
    main()
