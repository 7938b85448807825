"""Run a sweep on a SLURM cluster: dask-jobqueue submits the Dask workers as batch jobs.

    pip install dask-jobqueue
    python experiments/sweeps/slurm.py experiments/sweeps/noise-width.yaml --jobs 4 --partition gpu

Each SLURM job is one Dask worker with one GPU, on which ``--runs-per-gpu`` runs train side by
side (the same ``GPU`` resource the embedded cluster uses); ``--gpus 0`` asks for CPU jobs
instead. Run it on the login node (or in a small job of its own): it hosts the Dask scheduler,
prints the dashboard address, and writes the sweep's tables when every run is done. Killing it
loses nothing: the same command resumes, and runs already complete are skipped.
"""

from __future__ import annotations

import argparse
import logging
import sys


def slurm_cluster(cores: int = 8, memory: str = "32GB", gpus: int = 1, runs_per_gpu: int = 2,
                  partition: str | None = None, walltime: str = "04:00:00", account: str | None = None):
    """A ``dask_jobqueue.SLURMCluster`` whose jobs are single Dask workers with ``gpus`` GPUs."""
    from dask_jobqueue import SLURMCluster

    threads = runs_per_gpu * gpus if gpus else cores
    return SLURMCluster(
        cores=threads, processes=1, memory=memory, queue=partition, account=account, walltime=walltime,
        job_cpu=cores, job_extra_directives=[f"--gres=gpu:{gpus}"] if gpus else [],
        worker_extra_args=["--resources", f"GPU={runs_per_gpu * gpus}"] if gpus else [],
        python=sys.executable,
    )


def build_parser() -> argparse.ArgumentParser:
    """This script's options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec")
    parser.add_argument("--out", default="runs/sweeps")
    parser.add_argument("--jobs", type=int, default=4, help="SLURM jobs (Dask workers) to start")
    parser.add_argument("--cores", type=int, default=8)
    parser.add_argument("--memory", default="32GB")
    parser.add_argument("--gpus", type=int, default=1, help="GPUs per job (0: CPU jobs)")
    parser.add_argument("--runs-per-gpu", type=int, default=2)
    parser.add_argument("--partition")
    parser.add_argument("--account")
    parser.add_argument("--walltime", default="04:00:00")
    return parser


def main(argv: list[str] | None = None) -> int:
    from ddd_support.sweeps.spec import load_spec
    from ddd_support.sweeps.execute import run_sweep_command

    from ddd_support.errors import DDDError

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        spec = load_spec(args.spec)
        cluster = slurm_cluster(args.cores, args.memory, args.gpus, args.runs_per_gpu, args.partition,
                                args.walltime, args.account)
        cluster.scale(jobs=args.jobs)
        try:
            folder, failures = run_sweep_command(spec, args.out, cluster.scheduler_address, None,
                                                 args.runs_per_gpu, False, True, logging.getLogger("sweep"))
        finally:
            cluster.close()
    except DDDError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for label, why in failures.items():
        print(f"error: {label}: {why}", file=sys.stderr)
    print(folder)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
