"""Validated parameter groups: one pydantic model per ``parameters_<pipeline>.yml``.

Every model forbids unknown keys, so a typo in YAML fails at once with a sentence
instead of being ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from model_lifecycle.errors import LifecycleError

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base for every parameter group: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_params(model: type[M], raw: Mapping[str, Any] | M | None, group: str) -> M:
    """Validate ``raw`` (the dict Kedro hands to ``params:<group>``) into ``model``.

    The first problem becomes one sentence naming the full key, e.g.
    ``Unknown parameter 'ingest.splitz' in parameters_ingest.yml: ...``.
    """
    if isinstance(raw, model):
        return raw
    try:
        return model.model_validate(dict(raw or {}))
    except ValidationError as exc:
        raise LifecycleError(_sentence(model, exc, group)) from None


def _sentence(model: type[BaseModel], exc: ValidationError, group: str) -> str:
    error = exc.errors()[0]
    loc = [str(part) for part in error["loc"]]
    key = ".".join([group, *loc])
    where = f"parameters_{group}.yml"
    if error["type"] == "extra_forbidden":
        allowed = ", ".join(_fields_at(model, loc[:-1]))
        return (
            f"Unknown parameter '{key}' in {where}: remove it or fix its spelling "
            f"(allowed keys here: {allowed})."
        )
    if error["type"] == "missing":
        return f"Missing parameter '{key}' in {where}: add it."
    message = error["msg"].removeprefix("Value error, ").rstrip(".")
    return f"Invalid parameter '{key}' = {error.get('input')!r} in {where}: {message}."


def _fields_at(model: type[BaseModel], path: list[str]) -> list[str]:
    """The field names of the (nested) model found by following ``path``."""
    for name in path:
        field = model.model_fields.get(name)
        nested = _model_in(field.annotation) if field else None
        if nested is None:
            return []
        model = nested
    return sorted(model.model_fields)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
