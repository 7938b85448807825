"""Exceptions with messages that say what went wrong and what to do about it."""


class DDDError(Exception):
    """Base class of every error this package raises on bad input or state."""


class ConfigError(DDDError, ValueError):
    """An unknown profile, model or key, or a value out of range."""


class DataError(DDDError):
    """The CIFAR-10 source is missing, malformed or unreadable."""


class CheckpointError(DDDError):
    """No usable checkpoint in a run directory."""


class RunDirError(DDDError):
    """A run directory that belongs to another configuration or is incomplete."""


class TrainingDiverged(DDDError):
    """The training loss became NaN, infinite or far larger than at the start; ``run_dir``: the
    run directory of the run that diverged (a group of runs stops as a whole)."""

    def __init__(self, message: str, run_dir: object = None) -> None:
        super().__init__(message)
        self.run_dir = run_dir


class DiskFullError(RunDirError, OSError):
    """A file could not be written for lack of disk space (or quota); what was written before is intact."""
