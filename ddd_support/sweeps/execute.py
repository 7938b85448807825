"""Running a sweep's runs on Dask distributed: an embedded ``LocalCluster`` or a running scheduler.

Each task trains one run (or, with ``batched_seeds``, the seeds of one point and model together)
through ``train.driver.train_runs``, which resumes from the run's checkpoint and skips a
complete run. A worker that dies mid-run has its task rescheduled by Dask (up to
``distributed.scheduler.allowed-failures`` times) on another worker, where it resumes from the
last checkpoint; the run directory's lock keeps two processes from training one run at once.

On a machine with CUDA GPUs the embedded cluster starts one worker per GPU, each with a
``GPU`` resource of ``runs_per_gpu`` so that several small runs share a GPU; each task asks for
one unit. A run whose ``device`` is ``auto`` goes to its worker's GPU.
"""

from __future__ import annotations

import functools
import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from filelock import FileLock
from tqdm.auto import tqdm

from ddd_support.config import TrainConfig
from ddd_support.data.cifar import load_cifar10
from ddd_support.errors import DDDError
from ddd_support.files import atomic_write_json, now_iso, read_json
from ddd_support.sweeps.results import RECORD, write_sweep_record
from ddd_support.sweeps.spec import SweepPoint, SweepSpec, expand, run_root, sweep_dir
from ddd_support.train.runner import is_complete, train_group


@dataclass
class SweepOutcome:
    """What a sweep did: the run directories that are complete, and the runs that failed."""

    run_dirs: list[Path]
    failures: dict[str, str]


@functools.lru_cache(maxsize=2)
def _worker_arrays(root: str | None, source: str):
    """CIFAR-10 once per worker process (decoded-array cache on disk, then memory)."""
    return load_cifar10(root, source, progress=False)


def _worker_device(configured: str) -> str:
    """``cuda:i`` for worker ``i`` (mod the GPUs) when the run asks for ``auto`` and CUDA is there."""
    if configured != "auto" or not torch.cuda.is_available():
        return configured
    try:
        from distributed import get_worker

        name = get_worker().name
        index = int(name) if str(name).isdigit() else 0
    except (ImportError, ValueError):
        index = 0
    return f"cuda:{index % torch.cuda.device_count()}"


def train_task(configs: list[dict[str, Any]], outs: list[str], batched: bool = False) -> list[str]:
    """One Dask task: train (or resume, or skip) the given runs; returns their run directories."""

    cfgs = [TrainConfig.from_dict({**c, "device": _worker_device(c.get("device", "auto"))}) for c in configs]
    load = lambda: _worker_arrays(cfgs[0].data_root, cfgs[0].data_source)  # noqa: E731
    return [str(p) for p in train_group(cfgs, outs, load, batched)]


def task_groups(runs: list[SweepPoint], batched_seeds: bool) -> list[list[SweepPoint]]:
    """The runs of each task: one run per task, or each point and model's seeds together."""
    if not batched_seeds:
        return [[r] for r in runs]
    groups: dict[tuple[str, str], list[SweepPoint]] = {}
    for r in runs:
        groups.setdefault((r.point, r.config.model), []).append(r)
    return list(groups.values())


def estimated_cost(group: list[SweepPoint]) -> float:
    """Relative cost of a task (multiply-adds of its training): big runs go first, so workers end together."""
    cfg = group[0].config
    sizes = (3 * 32 * 32, *cfg.widths, 10)
    per_image = sum(a * b for a, b in zip(sizes, sizes[1:]))
    return float(len(group) * per_image * cfg.epochs * (cfg.n_train or 50_000))


def default_workers() -> int:
    """One worker per usable core (at least one)."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


#: What to install when Dask is missing: it is an optional extra of the package.
DASK_INSTALL = "pip install \"ddd_support[sweep]\" (or, in a clone: pip install -e \".[sweep]\")"


def require_dask() -> None:
    """Raise a one-line DDDError naming the install command unless Dask distributed can be imported."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise DDDError(f"the sweep command trains on Dask, which is not installed: {DASK_INSTALL}") from None


def make_client(scheduler: str | None, workers: int | None, runs_per_gpu: int = 2):
    """A Dask client of the scheduler at ``scheduler``, or of a new embedded ``LocalCluster``.

    The embedded cluster has one single-threaded worker process per core (``workers`` to
    choose), or one worker per GPU with ``runs_per_gpu`` threads and as many ``GPU`` units.
    """
    from distributed import Client, LocalCluster

    if scheduler:
        return Client(scheduler)
    for noisy in ("distributed", "bokeh", "tornado"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    if torch.cuda.is_available():
        n_gpus = torch.cuda.device_count()
        cluster = LocalCluster(n_workers=workers or n_gpus, threads_per_worker=runs_per_gpu, processes=True,
                               resources={"GPU": runs_per_gpu}, dashboard_address=":0",
                               silence_logs=logging.CRITICAL)
    else:
        cluster = LocalCluster(n_workers=workers or default_workers(), threads_per_worker=1, processes=True,
                               dashboard_address=":0", silence_logs=logging.CRITICAL)
    return Client(cluster)


def run_sweep(spec: SweepSpec, out: str | os.PathLike, client, batched_seeds: bool = False,
              progress: bool = True, on_submit: Callable[[int], None] | None = None) -> SweepOutcome:
    """Train every run of ``spec`` under ``out`` on ``client``'s cluster; complete runs are skipped.

    Tasks that fail (a diverged run, a run directory that holds another configuration) are
    reported in ``failures``; the other runs go on.
    """
    from distributed import as_completed

    runs = expand(spec)
    groups = sorted(task_groups(runs, batched_seeds), key=estimated_cost, reverse=True)
    uses_gpu = bool(client.run_on_scheduler(_cluster_has_gpu_resource))
    futures = {}
    for rank, group in enumerate(groups):
        first = group[0]
        label = f"{first.point}/{first.config.model}/seed" + "+".join(str(r.config.seed) for r in group)
        future = client.submit(train_task, [r.config.to_dict() for r in group],
                               [str(run_root(out, spec, r.point)) for r in group], batched_seeds,
                               key=f"train-{spec.name}-{label}-{uuid.uuid4().hex[:8]}", pure=False,
                               priority=len(groups) - rank,
                               resources={"GPU": 1} if uses_gpu else None)
        futures[future] = label
    if on_submit is not None:
        on_submit(len(futures))
    run_dirs: list[Path] = []
    failures: dict[str, str] = {}
    bar = tqdm(total=len(futures), desc=f"sweep {spec.name}", unit="task", disable=not progress)
    for future in as_completed(list(futures)):
        label = futures[future]
        if future.status == "error":
            failures[label] = _one_line(future.exception())
        else:
            run_dirs += [Path(p) for p in future.result()]
        bar.update(1)
        bar.set_postfix(failed=len(failures))
    bar.close()
    return SweepOutcome(sorted(run_dirs), failures)


def _cluster_has_gpu_resource(dask_scheduler=None) -> bool:
    """True if some worker of the cluster offers a ``GPU`` resource (runs on the scheduler)."""
    return any("GPU" in (ws.resources or {}) for ws in dask_scheduler.workers.values())


def _one_line(exc: BaseException | None) -> str:
    if exc is None:
        return "failed"
    name = type(exc).__name__
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{name}: {text}" if text else name


def run_sweep_command(spec: SweepSpec, out: str | os.PathLike, scheduler: str | None, workers: int | None,
                      runs_per_gpu: int, batched_seeds: bool, progress: bool, log) -> tuple[Path, dict[str, str]]:
    """The ``sweep`` command: start or join a cluster, train, then write the sweep's tables and record.

    ``out`` is made absolute, so that workers of a remote scheduler write where the tables are read
    (it must be a shared file system). Every invocation is recorded in ``sweep.json`` (under a lock,
    so two sweeps on one folder keep both entries) before anything trains, with status ``started``,
    and updated when it ends (``finished`` or ``interrupted``): a sweep killed outright stays
    recorded as ``started``. Returns the folder and the failures: runs that raised, runs left
    incomplete, run directories with another config.
    """
    require_dask()
    out = Path(out).resolve()
    t0, started = time.perf_counter(), now_iso()
    invocation: dict[str, Any] = {"id": uuid.uuid4().hex[:12], "start": started, "workers": 0,
                                  "scheduler": scheduler or "LocalCluster", "batched_seeds": batched_seeds,
                                  "status": "started"}
    folder = sweep_dir(out, spec)
    folder.mkdir(parents=True, exist_ok=True)
    failures: dict[str, str] = {}
    with FileLock(str(folder / ".sweep.lock")):
        _record_invocation(spec, out, folder, invocation)
    invocation["status"] = "interrupted"
    try:
        runs = expand(spec)
        if all(is_complete(r.config, run_root(out, spec, r.point)) for r in runs):
            # a rerun of a finished sweep: no cluster to start, only the tables to write again
            log.info("sweep %s: all %d run(s) complete, nothing to train", spec.name, len(runs))
            invocation["status"] = "finished"
            return _finish(spec, out, folder, invocation, failures, t0)
        client = make_client(scheduler, workers, runs_per_gpu)
        try:
            if scheduler:
                client.wait_for_workers(1)
            invocation["workers"] = len(client.scheduler_info().get("workers", {}))
            log.info("sweep %s: %d run(s) on %d Dask worker(s); dashboard %s", spec.name, len(runs),
                     invocation["workers"], getattr(client, "dashboard_link", None) or "not available (install bokeh)")
            failures = dict(run_sweep(spec, out, client, batched_seeds, progress).failures)
        finally:
            cluster = getattr(client, "cluster", None)
            client.close()
            if cluster is not None and scheduler is None:
                cluster.close()
        invocation["status"] = "finished"
    except BaseException:
        _record_end(spec, out, folder, invocation, failures, t0)
        raise
    return _finish(spec, out, folder, invocation, failures, t0)


def _record_end(spec: SweepSpec, out: Path, folder: Path, invocation: dict[str, Any], failures: dict[str, str],
                t0: float) -> list[str]:
    """Write the sweep's tables and its record with this invocation's end; returns the run
    directories that hold another configuration than the spec's."""
    invocation["wall_seconds"] = round(time.perf_counter() - t0, 1)
    with FileLock(str(folder / ".sweep.lock")):
        previous = [i for i in _previous_invocations(folder) if i.get("id") != invocation["id"]]
        invocation["failures"] = failures
        _, mismatched = write_sweep_record(spec, out, {"invocations": previous + [invocation]})
    return mismatched


def _finish(spec: SweepSpec, out: Path, folder: Path, invocation: dict[str, Any], failures: dict[str, str],
            t0: float) -> tuple[Path, dict[str, str]]:
    """Record the invocation's end (``_record_end``) and collect every failure of the sweep."""
    mismatched = _record_end(spec, out, folder, invocation, failures, t0)
    for run_dir in mismatched:
        failures[run_dir] = ("holds a run with another configuration than the spec's (left out of the tables); "
                             "use another --out or name, or delete it")
    record = read_json(folder / "sweep.json")
    if not failures and record["runs_complete"] < record["runs_planned"]:
        failures[str(folder)] = (f"only {record['runs_complete']} of {record['runs_planned']} runs are complete "
                                 f"there; with --scheduler, every worker must see {out} (a shared file system)")
    return folder, failures


def _record_invocation(spec: SweepSpec, out: Path, folder: Path, invocation: dict[str, Any]) -> None:
    """Append ``invocation`` to ``sweep.json``'s invocations (written whole if there is none yet)."""
    previous = _previous_invocations(folder)
    if previous or (folder / RECORD).exists():
        try:
            record = read_json(folder / RECORD)
        except DDDError:
            record = None
        if record is not None:
            atomic_write_json(folder / RECORD, {**record, "invocations": previous + [dict(invocation)]})
            return
    write_sweep_record(spec, out, {"invocations": previous + [dict(invocation)]})


def _previous_invocations(folder: Path) -> list[dict[str, Any]]:
    """The invocations ``sweep.json`` already records (none if it is missing or unreadable)."""

    try:
        return read_json(folder / RECORD).get("invocations", []) if (folder / RECORD).exists() else []
    except (DDDError, ValueError, OSError):
        return []
