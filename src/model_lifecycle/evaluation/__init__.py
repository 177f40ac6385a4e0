"""Measuring every model variant the same way: quality, calibration, latency, size and
cost, the Pareto front, and the report's figures (no Kedro in here)."""
