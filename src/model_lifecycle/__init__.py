"""model-lifecycle: the whole life of an image base model as a Kedro project."""

import os

__version__ = "0.1.0"

# MLflow's usage telemetry is off for every entry point (kedro run, the benchmarks, a
# served model, a notebook), not only under `make`: these runs must never call out.
# Set before any MLflow call records an event (MLflow reads it at each event); a user who
# wants it sets MLFLOW_DISABLE_TELEMETRY=false. Kedro's is off in `.telemetry` and settings.py.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
