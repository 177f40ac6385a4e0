"""docs/parameters.md is generated from the parameter models and must not go stale."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from model_lifecycle.paramdocs import TARGET, _rows, render
from model_lifecycle.params import StrictModel


def test_docs_parameters_md_is_up_to_date():
    assert TARGET.read_text() == render(), (
        "docs/parameters.md is stale: run `make docs` and commit it")


def test_every_parameter_is_documented():
    text = render()
    for key in ("finetune.budget_seconds", "compress.prune.recovery.final_epochs",
                "compress.distill.whiten_stem", "evaluate.latency.repeats", "ingest.source"):
        assert f"| `{key}` |" in text, key


def test_a_field_without_a_docstring_is_refused():
    class Undocumented(StrictModel):
        size: int = 3
        """Documented."""
        other: int = 4

    with pytest.raises(ValueError, match="Undocumented.other has no docstring"):
        _rows(Undocumented, "group", [{}])


def test_architecture_md_lists_every_catalog_dataset_under_its_layer():
    """docs/architecture.md's layers table is what kedro-viz groups by: a dataset added to
    the catalog (or moved to another layer) without the table fails here."""
    from kedro.config import OmegaConfigLoader  # noqa: PLC0415

    from tests.conftest import PROJECT_ROOT  # noqa: PLC0415

    loader = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), base_env="base",
                               default_run_env="base")
    layers: dict[str, set[str]] = {}
    for name, entry in loader["catalog"].items():
        if not name.startswith("_"):
            layer = entry["metadata"]["kedro-viz"]["layer"]
            layers.setdefault(layer, set()).add(name)
    text = (PROJECT_ROOT / "docs" / "architecture.md").read_text()
    table = text[text.index("| layer | datasets |"):].split("\n\n")[0]
    documented = {}
    for row in table.splitlines()[2:]:
        layer, datasets = (cell.strip() for cell in row.strip("|").split("|"))
        named = re.sub(r"\s*\([^)]*\)", "", datasets)  # not the remarks in brackets
        documented[layer] = set(re.findall(r"`([^`]+)`", named))
    assert documented == layers


@pytest.mark.parametrize(("variables", "uri"), [
    ([], "models:/model-lifecycle@champion"),
    (["ALIAS=baseline"], "models:/model-lifecycle@baseline"),
    (["MODEL_VERSION=3"], "models:/model-lifecycle/3"),  # as the README's `make serve` line says
    (["MODEL=flowers", "MODEL_VERSION=12"], "models:/flowers/12"),
])
def test_make_serve_serves_the_model_the_readme_says(variables, uri):
    if shutil.which("make") is None:
        pytest.skip("no make on this machine")
    root = Path(__file__).resolve().parents[1]
    shown = subprocess.run(["make", "-n", "serve", *variables],
                           cwd=root, capture_output=True, text=True, check=True).stdout
    assert f'-m "{uri}"' in shown
    assert "-m model_lifecycle.serving.check" in shown  # a sentence, not a traceback


def test_make_serve_serves_from_the_registry_it_is_told(monkeypatch):
    """A team that registers on its tracking server (`kedro run --env=server`) serves
    from it with SERVE_URI; by default the project's own store, whatever
    MLFLOW_TRACKING_URI a shell exports for something else."""
    if shutil.which("make") is None:
        pytest.skip("no make on this machine")
    root = Path(__file__).resolve().parents[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://elsewhere.example:5000")
    shown = subprocess.run(["make", "-n", "serve"], cwd=root, capture_output=True,
                           text=True, check=True).stdout
    assert shown.count(f'MLFLOW_TRACKING_URI="sqlite:///{root}/mlflow.db"') == 2
    shown = subprocess.run(["make", "-n", "serve", "SERVE_URI=http://127.0.0.1:5005"],
                           cwd=root, capture_output=True, text=True, check=True).stdout
    assert shown.count('MLFLOW_TRACKING_URI="http://127.0.0.1:5005"') == 2  # check, serve
    # a port given the wrong way would be checked on one port and served on another
    refused = subprocess.run(["make", "-n", "serve", "ARGS=--port 5009"], cwd=root,
                             capture_output=True, text=True, check=False)
    assert refused.returncode != 0
    assert "give the port with `make serve SERVE_PORT=<port>`" in refused.stderr
