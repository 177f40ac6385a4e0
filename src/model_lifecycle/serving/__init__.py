"""The registered model (an MLflow pyfunc taking raw images), the champion rule, and
registration (no Kedro in here)."""
