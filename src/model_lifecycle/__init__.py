"""model-lifecycle: the whole life of an image base model as a Kedro project."""

import logging
import os

__version__ = "0.1.0"

# MLflow's usage telemetry is off for every entry point (kedro run, the benchmarks, a
# served model, a notebook), not only under `make`: these runs must never call out.
# Set before any MLflow call records an event (MLflow reads it at each event); a user who
# wants it sets MLFLOW_DISABLE_TELEMETRY=false. Kedro's is off in `.telemetry` and settings.py.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

# Registering a version downloads its artifacts back twice (MLflow validates the input
# example against the logged model) and MLflow draws a progress bar for each: some forty
# carriage-return lines in a run's log for files of a few KiB. MLFLOW_ENABLE_ARTIFACTS_
# PROGRESS_BAR=true brings them back.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

# kedro-mlflow's KedroPipelineModel (a pyfunc model this project never logs) has no type
# hints on `predict`, and MLflow says so when kedro-mlflow is imported: a dozen lines at
# the top of every `kedro` command. MLflow raises it under its own `catch_warnings`, which
# a warnings filter cannot reach, and Kedro logs warnings through `py.warnings`: the line
# is dropped there. (This project's own model, serving/pyfunc.py, has the type hints.)
logging.getLogger("py.warnings").addFilter(
    lambda record: "Add type hints to the `predict` method" not in record.getMessage())
# Kedro's runner suggests `--async` at the start of every run; this project refuses it
# (MLflow's active run is per thread), so the suggestion is dropped.
logging.getLogger("kedro.runner.sequential_runner").addFilter(
    lambda record: "Use the --async flag" not in record.getMessage())
