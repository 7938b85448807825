"""Analyses of recorded runs: phases, clean/noisy separation, the large activation, ablation.

Every function reads a run directory (``runs.reader``) or the tables derived from it and
returns numbers or pandas tables; figures live in ``ddd_support.figures.runs``.
"""

from ddd_support.runs.reader import RunData, find_runs, load_run, load_runs

__all__ = ["RunData", "find_runs", "load_run", "load_runs"]
