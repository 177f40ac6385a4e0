"""The catalog covers every dataset the pipelines pass around, each with a kedro-viz layer."""

from pathlib import Path

import pytest
from kedro.config import OmegaConfigLoader

from model_lifecycle.pipeline_registry import LIFECYCLE
from tests.conftest import PROJECT_ROOT

LAYERS = ("raw", "intermediate", "primary", "feature", "model_input", "models",
          "model_output", "reporting")


@pytest.fixture(scope="module")
def catalog() -> dict:
    loader = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), base_env="base",
                               default_run_env="base")
    return {name: entry for name, entry in loader["catalog"].items()
            if not name.startswith("_")}


@pytest.mark.parametrize("stage", LIFECYCLE)
def test_every_dataset_of_every_stage_is_declared(catalog, stage):
    module = __import__(f"model_lifecycle.pipelines.{stage}", fromlist=["create_pipeline"])
    pipeline = module.create_pipeline()
    datasets = {name for name in pipeline.datasets() if not name.startswith("params:")}
    assert datasets <= set(catalog), f"not in catalog.yml: {datasets - set(catalog)}"


def test_every_dataset_has_a_lifecycle_layer(catalog):
    for name, entry in catalog.items():
        layer = entry.get("metadata", {}).get("kedro-viz", {}).get("layer")
        assert layer in LAYERS, f"{name} has layer {layer!r}"


def test_models_and_splits_are_versioned(catalog):
    for name in ("images", "splits", "augmentation_policy"):
        assert catalog[name].get("versioned") is True, name
        assert Path(catalog[name]["filepath"]).parts[0] == "data"


def test_building_the_ingest_side_never_imports_torch():
    """The ingest stage stays light (its benchmark's memory figure depends on it)."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    code = ("import sys, model_lifecycle.settings, model_lifecycle.pipelines.ingest\n"
            "from model_lifecycle.io import ImageSetDataset, JsonDataset, NpzDataset, "
            "TorchModelDataset\n"
            "TorchModelDataset(filepath='x.pt')\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=False, cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stderr[-1500:]
