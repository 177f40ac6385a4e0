"""``python -m model_lifecycle.serving.check MODEL ALIAS [VERSION]``: whether the registry
(``MLFLOW_TRACKING_URI``) holds the version ``make serve`` is asked to serve. Said in one
sentence with exit status 1 when it does not, instead of the traceback
``mlflow models serve`` prints (a fresh clone before ``make run``, a misspelt ``MODEL``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException

from model_lifecycle.ports import connection_failure


def missing(name: str, alias: str, version: str | None = None) -> str | None:
    """Why the registry cannot serve version ``version`` (or the one holding ``alias``)
    of registered model ``name``, or None when it can."""
    if version and not version.isdigit():
        return None  # `latest` or a stage: MLflow resolves those itself
    uri = mlflow.get_registry_uri()  # what `mlflow models serve` reads the version from
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return (f"There is no MLflow store at {uri.removeprefix('sqlite:///')} yet: run "
                "`make run` (or `kedro run`) first, which registers the models.")
    client = mlflow.MlflowClient()
    wanted = f"version {version}" if version else f"version holding the alias '{alias}'"
    try:
        if version:
            client.get_model_version(name, version)
        else:
            client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if any(sign in exc.message for sign in _DOWN):  # a tracking server that is down
            return (f"The registry at {uri} does not answer "
                    f"({connection_failure(exc.message) or 'no connection'}): start it (make "
                    "server), or set SERVE_URI to the registry that holds the model.")
        if exc.error_code not in _NOT_FOUND:  # a registry that cannot be read: as it says
            return f"The registry at {uri} cannot be read: {exc.message}"
        try:
            versions = client.search_model_versions(f"name = '{name}'")
        except MlflowException:
            versions = []
        have = (f"it has versions {', '.join(sorted((str(v.version) for v in versions), key=int))}"
                if versions else "it has no version")
        return (f"The registry at {uri} has no {wanted} of the model "
                f"'{name}' ({have}): run `make run` (or `kedro run --pipelines=register`) "
                "first, or choose another with MODEL=, ALIAS= or MODEL_VERSION=.")
    return None


# how requests, through MLflow, says that nothing answers at the address
_DOWN = ("NewConnectionError", "ConnectTimeout", "Connection refused", "Name or service")
# how MLflow says that a registered model, a version or an alias does not exist
_NOT_FOUND = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"}


def main(argv: list[str] | None = None) -> int:
    name, alias, *version = argv if argv is not None else sys.argv[1:]
    # a tracking server that is down: MLflow's client retries for minutes by default
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    reason = missing(name, alias, version[0] if version and version[0] else None)
    if reason:
        print(f"Error: {reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
