"""Measured comparisons (``make bench``); results land in ``benchmarks/results/``."""
