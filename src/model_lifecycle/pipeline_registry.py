"""Every pipeline under ``pipelines/`` by its folder name; ``__default__`` runs them in order."""

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

# Stages of the default run, in lifecycle order. ``baseline`` (the from-scratch yardstick),
# ``robust`` (adversarial fine-tuning), ``adapt`` (test-time adaptation) and ``inference``
# are not part of it.
LIFECYCLE = ("ingest", "augment", "pretrain", "finetune", "compress", "explain", "evaluate",
             "register")
OPTIONAL = ("baseline", "robust")  # pipelines that make an optional variant
BEYOND = ("transfer", "fewshot", "adapt")  # neither: their own outputs, run when asked
# Kedro namespaces and their parameter groups: `transfer` pretrains on the `source`
# data set, whose groups (`params:source.pretrain`, …) are validated like the project's.
NAMESPACES = {"source": ("ingest", "augment", "pretrain")}


def register_pipelines() -> dict[str, Pipeline]:
    pipelines = find_pipelines(raise_errors=True)
    # `kedro run --pipelines=x` loads only x; the default run needs (and loads) them all.
    if all(name in pipelines for name in LIFECYCLE):
        # imported here: hooks read LIFECYCLE, and an ingest run must not import torch
        from model_lifecycle.pipelines import evaluate, explain  # noqa: PLC0415

        # explain and evaluate without the optional variants (`scratch`, `robust`), which
        # only `baseline` and `robust` make
        stages = {**pipelines,
                  "explain": explain.create_pipeline(optional_variants=False),
                  "evaluate": evaluate.create_pipeline(optional_variants=False)}
        pipelines["__default__"] = sum((stages[name] for name in LIFECYCLE), Pipeline([]))
    return pipelines
