"""One training loop for every training node: optimiser, schedule, early stopping,
checkpoints and resume, device and mixed precision (no Kedro in here)."""
