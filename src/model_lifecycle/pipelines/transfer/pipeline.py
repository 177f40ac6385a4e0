"""Wiring of the ``transfer`` pipeline: the encoder is pretrained on the ``source`` data
set and fine-tuned on the project's own data, then carried through the lifecycle.

The source stages are the ``ingest``, ``augment`` and ``pretrain`` pipelines under the
Kedro namespace ``source``: their datasets are ``source.images``, ``source.splits``, …
``source.pretrained_encoder`` (versioned, ``conf/base/catalog.yml``) and their
parameters the groups under ``source`` (``parameters_source.yml``); the other groups
(``runtime``, ``fewshot``) are shared: the source holds out those of the novel classes it
holds, so that pretraining never sees them. ``finetune`` reads
``source.pretrained_encoder`` instead of ``pretrained_encoder``, so kedro-viz draws which
data the encoder came from.
"""

import warnings

from kedro.pipeline import Pipeline

from model_lifecycle.pipeline_registry import NAMESPACES
from model_lifecycle.pipelines import (
    augment,
    compress,
    evaluate,
    explain,
    finetune,
    ingest,
    pretrain,
    register,
)

SOURCE = "source"


def create_pipeline(**kwargs) -> Pipeline:
    policy = augment.create_pipeline().only_nodes("resolve_augmentation_policy")
    stages = (ingest.create_pipeline(source=True) + policy
              + pretrain.create_pipeline(source=True))
    shared = {name for name in stages.inputs()  # runtime, fewshot: one for both data sets
              if name.startswith("params:") and name[7:] not in NAMESPACES[SOURCE]}
    source = Pipeline(stages, namespace=SOURCE, parameters=shared)
    with warnings.catch_warnings():  # the dotted name is the namespace's own dataset
        warnings.filterwarnings("ignore", "One or more dataset names contain '.'")
        target = Pipeline(finetune.create_pipeline(),
                          inputs={"pretrained_encoder": f"{SOURCE}.pretrained_encoder"})
    rest = (compress.create_pipeline() + explain.create_pipeline(optional_variants=False)
            + evaluate.create_pipeline(optional_variants=False) + register.create_pipeline())
    return source + ingest.create_pipeline() + augment.create_pipeline() + target + rest
