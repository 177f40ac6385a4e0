"""Project settings: https://docs.kedro.org/en/stable/kedro_project_setup/settings.html"""

import warnings

from kedro.config import OmegaConfigLoader

from model_lifecycle.hooks import (
    CloseMlflowRunHook,
    NodeTimingHook,
    PreflightHook,
    RunBookkeepingHook,
    TrackingServerHook,
)

# kedro-mlflow registers its own hook through its entry point.
HOOKS = (TrackingServerHook(), PreflightHook(), CloseMlflowRunHook(), RunBookkeepingHook(),
         NodeTimingHook())

# Telemetry must never prompt or call out (CI has no stdin, the machines no internet).
DISABLE_HOOKS_FOR_PLUGINS = ("kedro-telemetry",)

# Deprecation chatter from dependencies, not actionable for users of this project.
warnings.filterwarnings("ignore", message=r"register_new_resolver\(\) is deprecated")
warnings.filterwarnings("ignore", message=r".*Add type hints to the `predict` method")

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "config_patterns": {
        "mlflow": ["mlflow*", "mlflow*/**"],
    },
}
