"""Pruning, INT8 quantization and distillation (no Kedro in here)."""
