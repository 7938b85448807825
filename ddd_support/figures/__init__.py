"""The book's figures, one style: of runs (``runs``) and of sweeps (``sweeps``)."""
