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
