"""Project settings: https://docs.kedro.org/en/stable/kedro_project_setup/settings.html"""

import warnings
from importlib.metadata import metadata

from kedro.config import OmegaConfigLoader

from model_lifecycle.hooks import (
    BatchedParamsMlflowHook,
    CloseMlflowRunHook,
    NodeTimingHook,
    PreflightHook,
    RunBookkeepingHook,
    TrackingServerHook,
    TrainedOnHook,
)

# kedro-mlflow's hook comes last, where its entry point would register it (hooks run
# last-registered first), as a subclass that logs each node's parameters in one request.
_PREFLIGHT = PreflightHook()
HOOKS = (TrackingServerHook(), _PREFLIGHT, CloseMlflowRunHook(), RunBookkeepingHook(),
         NodeTimingHook(), TrainedOnHook(_PREFLIGHT), BatchedParamsMlflowHook())

# Telemetry must never prompt or call out (CI has no stdin, the machines no internet);
# kedro-mlflow's own hook is replaced by the one above. (Kedro matches the name in the
# package's metadata, which kedro-mlflow spells `kedro_mlflow`.)
DISABLE_HOOKS_FOR_PLUGINS = ("kedro-telemetry", metadata("kedro-mlflow")["Name"])

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
