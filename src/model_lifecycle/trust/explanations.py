"""Every variant explained the same way on the same seeded test images: attribution
maps per method, their faithfulness (deletion and insertion AUC against a random
order), and how far each variant's maps drifted from the baseline's."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import nn

from model_lifecycle.models.predict import predict
from model_lifecycle.models.structure import model_id
from model_lifecycle.trust.config import ExplainParams
from model_lifecycle.trust.explain import (
    GRADIENT_FREE,
    attribute,
    attribution_drift,
    deletion_insertion,
    explanation_figure,
    methods_for,
)

log = logging.getLogger(__name__)
OCCLUSION = GRADIENT_FREE[0]  # what explains a model without autograd (INT8)


def explain_sample(labels: np.ndarray, test: np.ndarray, class_names: tuple[str, ...],
                   params: ExplainParams) -> np.ndarray:
    """``params.images_per_class`` test images of every class present in the test split,
    drawn with ``params.seed``, in index order. A class with fewer test images is
    explained on all it has, with a warning (a small class of a user's folder should not
    stop the run after training; ingest's report already warns of a class missing from
    test, which is left out here)."""
    rng = np.random.default_rng(params.seed)
    chosen, short = [], []
    for label, name in enumerate(class_names):
        of_class = test[labels[test] == label]
        if len(of_class) == 0:
            continue
        if len(of_class) < params.images_per_class:
            short.append(f"'{name}' {len(of_class)}")
        chosen.append(rng.choice(of_class, min(params.images_per_class, len(of_class)),
                                 replace=False))
    if short:
        log.warning("explain.images_per_class is %d but the test split holds fewer images "
                    "of %d class(es), explained on all they have: %s",
                    params.images_per_class, len(short), ", ".join(short))
    return np.sort(np.concatenate(chosen)) if chosen else np.empty(0, dtype=np.int64)


def variant_methods(model: nn.Module, params: ExplainParams) -> tuple[str, ...]:
    """The configured methods that can explain ``model``, first the report's; a model
    none of them can explain (INT8 without occlusion configured) gets occlusion."""
    runnable = set(methods_for(model))
    chosen = tuple(m for m in params.methods if m in runnable)
    return chosen or (OCCLUSION,)


def explain_models(models: dict[str, nn.Module], images: np.ndarray, labels: np.ndarray,
                   sample: np.ndarray, class_names: tuple[str, ...], params: ExplainParams,
                   *, baseline: str
                   ) -> tuple[pd.DataFrame, dict[str, Any], dict[str, Figure]]:
    """Attribution maps of each model for the true class of every ``sample`` image.

    Returns the summary (one row per variant and method: mean deletion and insertion
    AUC, the same for the random order, and drift from ``baseline``'s map of the same
    method: Spearman ρ and top-pixel overlap), the per-image details and one figure per
    variant (``<variant>.png``).
    """
    x = torch.from_numpy(images[sample]).float() / 255
    target = torch.from_numpy(labels[sample]).long()
    plans = {name: variant_methods(model, params) for name, model in models.items()}
    # the baseline also runs every method another variant uses: drift compares like
    # with like (an INT8 model's occlusion maps with the baseline's occlusion maps)
    plans[baseline] = tuple(dict.fromkeys(
        [*plans[baseline], *(m for methods in plans.values() for m in methods)]))
    maps = {}
    rows, details, figures = [], {"indices": sample.tolist(),
                                  "true": target.tolist(), "variants": {}}, {}
    for name, model in [(baseline, models[baseline]),
                        *((n, m) for n, m in models.items() if n != baseline)]:
        tic = time.perf_counter()
        maps[name] = {method: attribute(model, x, target, method, ig_steps=params.ig_steps,
                                        occlusion_window=params.occlusion_window,
                                        occlusion_stride=params.occlusion_stride,
                                        reference=params.reference)
                      for method in plans[name]}
        predicted = predict(model, images, sample).argmax(1)
        info: dict[str, Any] = {"methods": list(plans[name]),
                                "predicted": predicted.tolist(), "per_image": {}}
        random = None  # the random-order curves: the same for every method of a model
        for method, attribution in maps[name].items():
            curves = deletion_insertion(model, x, target, attribution,
                                        steps=params.curve_steps, seed=params.seed,
                                        baseline=random is None, reference=params.reference)
            random = random or {k: v for k, v in curves.items() if k.endswith("_random")}
            curves |= random
            drift = attribution_drift(attribution, maps[baseline][method],
                                      top_fraction=params.top_fraction)
            rows.append({"variant": name, "method": method,
                         "gradient_free": method in GRADIENT_FREE,
                         **{f"{k}_auc": float(np.mean(v)) for k, v in curves.items()},
                         "drift_spearman": drift["spearman"],
                         "drift_top_overlap": drift["top_overlap"],
                         # which model was explained (evaluate matches it to its own)
                         "model_id": model_id(model)})
            info["per_image"][method] = {k: np.asarray(v).tolist() for k, v in curves.items()}
        info["seconds"] = time.perf_counter() - tic
        details["variants"][name] = info
        shown = {m: maps[name][m] for m in plans[name] if name != baseline
                 or m in variant_methods(model, params)}
        figures[f"{name}.png"] = explanation_figure(
            x, shown, predicted.tolist(), target.tolist(), class_names,
            title=f"{name}: attributions for the true class ({len(sample)} test images)")
        log.info("explain %s: %s in %.1f s", name, ", ".join(plans[name]), info["seconds"])
    return pd.DataFrame(rows), details, figures


def report_columns(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per variant for the evaluation report, from its first method (the
    report's, listed first by :func:`explain_models`): ``explained_with``, the four
    AUCs, ``attribution_drift`` (1 − Spearman ρ against the baseline) and
    ``attribution_top_overlap``; ``explained_model_id``, the model explained (missing
    in summaries written before it was recorded)."""
    first = summary.groupby("variant", sort=False).head(1)
    columns = [c for c in summary.columns if c.endswith("_auc")]
    return pd.DataFrame({
        "variant": first.variant, "explained_with": first.method,
        **{c: first[c].astype(float) for c in columns},
        "attribution_drift": 1 - first.drift_spearman.astype(float),
        "attribution_top_overlap": first.drift_top_overlap.astype(float),
        "explained_model_id": (first.model_id if "model_id" in first.columns
                               else pd.Series(None, index=first.index, dtype=object)),
    }).reset_index(drop=True)
