"""Measuring models the same way: latency, size, cost (no Kedro in here)."""
