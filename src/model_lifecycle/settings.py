"""Project settings: https://docs.kedro.org/en/stable/kedro_project_setup/settings.html"""

from kedro.config import OmegaConfigLoader

from model_lifecycle.hooks import MissingInputsHook

# kedro-mlflow registers its own hook through its entry point.
HOOKS = (MissingInputsHook(),)

# Telemetry must never prompt or call out (CI has no stdin, the machines no internet).
DISABLE_HOOKS_FOR_PLUGINS = ("kedro-telemetry",)

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "config_patterns": {
        "mlflow": ["mlflow*", "mlflow*/**"],
    },
}
