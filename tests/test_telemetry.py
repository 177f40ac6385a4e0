"""No run calls out: MLflow's usage telemetry is off whatever the shell exports."""

import os
import subprocess
import sys

from tests.conftest import PROJECT_ROOT


def test_mlflow_telemetry_is_off_without_the_makefiles_variables():
    # a shell that never went through `make`: none of its exports, not even CI's (MLflow
    # also stays quiet under CI and pytest, which would hide the project's own switch)
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
    code = ("import mlflow, model_lifecycle\n"
            "from mlflow.telemetry.utils import is_telemetry_disabled\n"
            "print(is_telemetry_disabled())")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=PROJECT_ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True"


def test_a_user_can_turn_mlflow_telemetry_back_on():
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"),
           "MLFLOW_DISABLE_TELEMETRY": "false"}
    code = ("import mlflow, model_lifecycle\n"
            "from mlflow.telemetry.utils import is_telemetry_disabled\n"
            "print(is_telemetry_disabled())")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=PROJECT_ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
