"""The model variants: one declaration that ``compress``, ``evaluate`` and ``register``
read. A new variant is one entry here plus the node that produces it.

The first entry is the baseline every other variant is compared with (the registry's
``baseline`` alias, the champion rule's reference).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Variant:
    name: str  # report row and registry tag `variant`
    dataset: str  # catalog entry holding the model
    produced_by: str  # the pipeline whose node writes it
    description: str  # one line: what the variant is
    # the report's `method` column from the validated compress parameters (default:
    # `description`)
    method: Callable[[Any], str] | None = None
    registered: bool = True  # a version of the registered model
    # an `evaluate` flag that must be true for it to be evaluated (an optional variant
    # whose pipeline is not part of the default run); None: always evaluated
    evaluated_when: str | None = None
    # INT8 variants have no autograd: the name of the float variant they were made from
    # (from the validated compress parameters) is attacked in their place (a transfer
    # attack) and the report says so; None: the variant is differentiable
    float_source: Callable[[Any], str] | None = None

    def method_text(self, compress: Any) -> str:
        return self.method(compress) if self.method else self.description

    def attacked_through(self, compress: Any) -> str | None:
        """The variant whose gradients attack this one (None: its own)."""
        return self.float_source(compress) if self.float_source else None


def _pruning(compress: Any) -> str:
    prune = compress.prune
    if prune.method == "structured":
        s = prune.structured
        return (f"structured pruning ({s.importance}, target {s.target:g}x fewer "
                f"{s.metric})")
    return f"unstructured pruning ({prune.unstructured.amount:.0%} of weights)"


VARIANTS: tuple[Variant, ...] = (
    Variant("finetuned", "finetuned_model", "finetune",
            "the pretrained encoder fine-tuned on the labeled images",
            method=lambda _c: "none"),
    Variant("pruned", "pruned_model", "compress",
            "structured (or unstructured) pruning of the fine-tuned model, recovered",
            method=_pruning),
    Variant("quantized", "quantized_model", "compress",
            "INT8 quantization of the fine-tuned (or pruned) model",
            method=lambda c: (f"int8 {c.quantize.mode} quantization ({c.quantize.backend}) "
                              f"of the {c.quantize.source} model"),
            float_source=lambda c: c.quantize.source),
    Variant("onnx_int8", "onnx_int8_model", "compress",
            "INT8 for ONNX Runtime (static, QDQ) of the fine-tuned (or pruned) model",
            method=lambda c: (f"int8 static QDQ quantization (onnxruntime) of the "
                              f"{c.quantize.source} model"),
            float_source=lambda c: c.quantize.source),
    Variant("distilled", "distilled_model", "compress",
            "a smaller student distilled from the fine-tuned model",
            method=lambda c: f"distillation into {c.distill.student_arch}"),
    Variant("scratch", "scratch_model", "baseline",
            "the fine-tuning recipe from scratch, no pretraining",
            method=lambda _c: "none (trained from scratch, no pretraining)",
            registered=False, evaluated_when="include_scratch"),
    Variant("robust", "robust_model", "robust",
            "the fine-tuning recipe on adversarial examples (finetune.adversarial)",
            method=lambda _c: "none (adversarial fine-tuning)",
            registered=False, evaluated_when="include_robust"),
)


def variants() -> tuple[Variant, ...]:
    """The declared variants (read at call time, so a test or plugin can extend
    ``VARIANTS``)."""
    return VARIANTS


def baseline() -> Variant:
    return variants()[0]


def variant(name: str) -> Variant:
    return next(v for v in variants() if v.name == name)
