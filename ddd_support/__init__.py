"""Support package for the epoch-wise double descent book: data, runs, training, analysis, the book.

Layers, lowest first; a module imports only its own layer and the ones below it
(``tests/test_architecture.py`` enforces the order and the absence of import cycles)::

    errors, files, config      foundations: exceptions that carry their remedy, atomic file
                               writes, the training configuration and named profiles
    data/, models              CIFAR-10 as tensors (source, decode-once cache, subsets) and label
                               noise; the MLPs
    runs/                      the run directory: ``schema`` (every file name and its format,
                               written down once), ``checkpoints``, ``recorder`` (the write side:
                               lock, validation, resume), ``reader`` (``load_run``: the read side)
    train/                     ``driver.train_runs`` (the one epoch loop, any number of runs),
                               ``engine`` (per-model or stacked / CUDA graph), ``optim``,
                               ``prepare`` (a run's data), ``snapshots``, ``evaluation``,
                               ``schedule``, ``runner`` (profiles and groups of runs)
    analysis/                  phases, separation, the large activation, ablation, statistics,
                               the claims table, summaries over runs
    sweeps/                    a profile plus grid axes: the spec, Dask execution, the tables
    figures/                   every figure of the book, one style
    book/                      what the chapters call: ``run`` (``python -m ddd_support.book``),
                               ``parameters``, ``chapters`` (which runs a chapter reads),
                               ``reference`` (compact committed copies), ``report`` (``analyze``)
    cli                        ``python -m ddd_support {train,sweep,profiles,analyze,export-reference}``

Data flow: CIFAR-10 -> ``data`` -> ``train`` -> a run directory (``runs``) -> ``analysis``
-> ``figures`` and the chapters (``book``); ``sweeps`` run many runs and tabulate them.
Imports sit at the top of each module, except the optional heavy dependencies (Dask in
``sweeps.execute``, papermill and jupytext in ``book.run``, Playwright in the tests) and the image
readers of ``data.cifar``, imported inside the functions that need them, and ``cli``, which imports
each command's modules when the command runs (``--help`` and ``profiles`` answer without torch).
"""

__version__ = "0.1.0"
