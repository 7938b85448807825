"""One Dask cluster per test session for the sweeps that join a running scheduler (``--scheduler``).

Starting a ``LocalCluster`` and importing torch in its workers costs several seconds; the sweep tests
that do not kill workers share this one. Its workers read the session's tiny image folder
(``DDD_DATA_ROOT``), so every sweep test trains on the same images. The default path of the sweep
command, an embedded ``LocalCluster`` of its own, is still taken by the kill test.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from dataclasses import dataclass

import pytest

from ddd_support.cli import main

from tests.conftest import write_image_folder


@pytest.fixture(scope="session")
def sweep_env(tmp_path_factory) -> dict[str, str]:
    """The environment of every sweep in the tests: the session's image folder, its own decoded-array
    cache, one thread per process."""
    tmp = tmp_path_factory.mktemp("sweep_data")
    root = write_image_folder(tmp / "imgs", per_class=12)
    return {**os.environ, "DDD_DATA_ROOT": str(root), "DDD_CACHE_DIR": str(tmp / "cache"), "OMP_NUM_THREADS": "1"}


def _import_the_training_code() -> bool:
    import ddd_support.sweeps.execute  # noqa: F401

    return True


@pytest.fixture(scope="session")
def sweep_scheduler(sweep_env) -> str:
    """The address of a session ``LocalCluster`` of four single-threaded worker processes that have
    already imported the training code: enough for two sweeps of two runs to train at the same time."""
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=4, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=logging.CRITICAL,
        env={k: sweep_env[k] for k in ("DDD_DATA_ROOT", "DDD_CACHE_DIR", "OMP_NUM_THREADS")})
    client = distributed.Client(cluster)
    client.run(_import_the_training_code)
    yield cluster.scheduler_address
    client.close()
    cluster.close()


@dataclass
class Finished:
    """What a command left: its exit status and what it wrote."""

    returncode: int
    stdout: str
    stderr: str


def sweep_here(argv: list[str]) -> Finished:
    """``python -m ddd_support <argv>`` run in this process, its output captured."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return Finished(code, out.getvalue(), err.getvalue())
