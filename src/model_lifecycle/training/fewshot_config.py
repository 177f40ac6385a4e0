"""``params:fewshot`` — classes held out of every training stage, and the few-shot
comparison of encoders on them (N-way K-shot episodes answered by Prototypical Networks).

No torch here: ``ingest`` reads ``fewshot.novel_classes`` and never imports torch.
Each field's docstring is its entry in docs/parameters.md.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from model_lifecycle.params import StrictModel

Encoder = Literal["pretrained", "supervised", "scratch", "meta_trained"]
ENCODERS: tuple[Encoder, ...] = ("pretrained", "supervised", "scratch", "meta_trained")


def _names(value: Any) -> Any:
    """Class names as strings: YAML reads the digits' classes ``[7, 8, 9]`` as numbers."""
    if isinstance(value, (list, tuple)):
        return tuple(str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
                     for v in value)
    return value


# the keys a meta-training episode's refusal names, and how to get more labelled images
META_KEYS = ("fewshot.meta_train.way", "fewshot.meta_train.shot",
             "fewshot.meta_train.queries")
MORE_LABELED = ("label more of the training images (a higher ingest.labeled_fraction, "
                "then ingest again)")


class MetaTrainParams(StrictModel):
    """Episodic meta-training of an encoder with the Prototypical Networks loss on the base
    classes' ``train_labeled`` images (Snell et al. 2017)."""

    init: Literal["scratch", "pretrained", "finetuned"] = "scratch"
    """Where meta-training starts: `scratch` (fewshot.arch, random weights), `pretrained`
    (the latest pretrained_encoder) or `finetuned` (the encoder of the latest
    finetuned_model)."""
    episodes: int = Field(2000, ge=1)
    """Training episodes (one optimizer step each)."""
    way: int = Field(5, ge=2)
    """Classes per training episode (at most the number of base classes)."""
    shot: int = Field(5, ge=1)
    """Support images per class in a training episode."""
    queries: int = Field(15, ge=1)
    """Query images per class in a training episode."""
    lr: float = Field(1e-3, gt=0)
    """Peak learning rate of Adam (5% linear warm-up, then cosine decay)."""
    budget_seconds: float | None = Field(None, gt=0)
    """Seconds of meta-training: the schedule is shortened to end in time; null: every
    episode."""


class FewshotParams(StrictModel):
    """Validated ``fewshot`` group of ``parameters_fewshot.yml``."""

    novel_classes: tuple[str, ...] = ()
    """Class names held out of every training stage (ingest keeps them apart in
    novel_images; splits, pretrain, finetune, compress, evaluate and register never see
    them); empty: no hold-out."""
    way: int = Field(5, ge=2)
    """Classes per evaluation episode (at most the number of novel classes)."""
    shots: tuple[int, ...] = (1, 5)
    """Support images per class, one evaluation per value."""
    queries: int = Field(15, ge=1)
    """Query images per class in an evaluation episode."""
    episodes: int = Field(600, ge=1)
    """Evaluation episodes per shot (seeded by runtime.seed; every encoder answers the
    same episodes). The 95% interval is 1.96 std / sqrt(episodes)."""
    encoders: tuple[Encoder, ...] = ENCODERS
    """Encoders compared: `pretrained` (SimCLR, pretrained_encoder), `supervised` (the
    encoder of finetuned_model, trained on the base classes), `scratch` (fewshot.arch,
    random weights) and `meta_trained` (fewshot.meta_train; meta-training runs only when
    it is listed). A missing optional one is skipped with a logged reason."""
    feature_norm: Literal["none", "l2"] = "none"
    """Features as the encoder gives them (`none`, as Snell et al.) or scaled to unit
    length (`l2`) before prototypes and distances."""
    arch: str = "small_cnn"
    """Architecture of the `scratch` encoder and of meta-training from scratch (the
    pretrained / fine-tuned architecture, for a fair comparison)."""
    arch_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Arguments of fewshot.arch, e.g. {width: 32}."""
    meta_train: MetaTrainParams = MetaTrainParams()
    """Episodic meta-training on the base classes."""

    @field_validator("novel_classes", mode="before")
    @classmethod
    def _as_names(cls, value: Any) -> Any:
        return _names(value)

    @field_validator("novel_classes")
    @classmethod
    def _distinct(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        repeated = sorted({name for name in value if value.count(name) > 1})
        if repeated:
            raise ValueError(f"class {', '.join(repeated)} is listed twice: list each "
                             "class once")
        return value

    @field_validator("way")
    @classmethod
    def _enough_novel_classes(cls, value: int, info: ValidationInfo) -> int:
        novel = info.data.get("novel_classes") or ()
        if novel and value > len(novel):
            raise ValueError(f"an episode needs {value} classes but fewshot.novel_classes "
                             f"holds out {len(novel)}: lower fewshot.way or hold out more "
                             "classes")
        return value

    @field_validator("shots")
    @classmethod
    def _positive_shots(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or min(value) < 1 or len(set(value)) != len(value):
            raise ValueError("list one or more distinct shot counts, each at least 1")
        return value

    @field_validator("encoders")
    @classmethod
    def _some_encoders(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value or len(set(value)) != len(value):
            raise ValueError(f"list one or more distinct encoders of {', '.join(ENCODERS)}")
        return value
