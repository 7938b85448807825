"""Training: the driver (one epoch loop for any number of runs), its engines, a run's data and
snapshots, the runner.
"""
