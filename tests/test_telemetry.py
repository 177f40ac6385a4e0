"""No run calls out: MLflow's usage telemetry is off whatever the shell exports."""

import os
import subprocess
import sys

from tests.conftest import PROJECT_ROOT


def _telemetry_disabled(**env: str) -> str:
    """What MLflow says, in a fresh process that imported the project, in a shell that
    never went through `make`: none of its exports, not even CI's (MLflow also stays quiet
    under CI and pytest, which would hide the project's own switch)."""
    bare = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **env}
    code = ("import mlflow, model_lifecycle\n"
            "from mlflow.telemetry.utils import is_telemetry_disabled\n"
            "print(is_telemetry_disabled())")
    return subprocess.run([sys.executable, "-c", code], env=bare, cwd=PROJECT_ROOT,
                          capture_output=True, text=True, check=True).stdout.strip()


def test_mlflow_telemetry_is_off_without_the_makefiles_variables():
    assert _telemetry_disabled() == "True"


def test_a_user_can_turn_mlflow_telemetry_back_on():
    assert _telemetry_disabled(MLFLOW_DISABLE_TELEMETRY="false") == "False"
