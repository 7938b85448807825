"""Sweeps: a profile plus grid axes (``spec``), run on Dask (``execute``), tabulated (``results``)."""
