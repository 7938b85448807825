"""Support package for the epoch-wise double descent book: data, noise, models, training, analysis."""

__version__ = "0.1.0"
