"""CIFAR-10 as tensors (``cifar``: sources, decode-once cache, subsets, normalisation) and label
noise (``noise``).
"""
