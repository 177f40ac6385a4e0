"""The environments of the distributed-training check (benchmarks/distributed.py,
docs/distributed.md "Measured") pass the distributed preflight on two ranks: fixed
epochs, no time budget, a global batch the two ranks can share."""

from __future__ import annotations

import pytest
from kedro.config import OmegaConfigLoader

from model_lifecycle.params import parse_params
from model_lifecycle.training.config import FinetuneParams, RuntimeParams
from model_lifecycle.training.distributed import check_launch, processors
from tests.conftest import PROJECT_ROOT


@pytest.mark.skipif(processors() < 2, reason="two ranks need two processors")
@pytest.mark.parametrize("env", ["distributed_digits", "distributed_cifar10"])
def test_the_check_environments_train_on_two_ranks(env):
    params = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), base_env="base",
                               default_run_env=env)["parameters"]
    # what `--params runtime.distributed.nproc_per_node=2` gives the run
    runtime = parse_params(RuntimeParams, {**params["runtime"],
                                           "distributed": {"nproc_per_node": 2}}, "runtime")
    finetune = parse_params(FinetuneParams, params["finetune"], "finetune")
    check_launch(runtime, {"finetune": finetune, "finetune.adversarial": finetune.adversarial})
    assert finetune.budget_seconds is None and finetune.epochs >= 1
    assert params["ingest"]["labeled_fraction"] == 1.0  # every label: accuracies comparable
