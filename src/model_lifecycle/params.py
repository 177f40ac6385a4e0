"""Validated parameter groups: one pydantic model per ``parameters_<pipeline>.yml``.

Every model forbids unknown keys, so a typo in YAML fails at once with a sentence
instead of being ignored.
"""

from __future__ import annotations

import os
import re
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError

from model_lifecycle.errors import LifecycleError

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base for every parameter group: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


# A path a user writes in a parameter: `~` is their home folder, as in their shell (a
# quoted `--params` value or a YAML file is never expanded by the shell).
UserPath = Annotated[str, AfterValidator(os.path.expanduser)]


def parse_params(model: type[M], raw: Mapping[str, Any] | M | None, group: str, *,
                 overrides: frozenset[str] = frozenset(),
                 context: dict[str, Any] | None = None, env: str | None = None) -> M:
    """Validate ``raw`` (the dict Kedro hands to ``params:<group>``) into ``model``.

    The first problem becomes one sentence naming the full key, e.g.
    ``Unknown parameter 'ingest.splitz' in parameters_ingest.yml: ...``; a key among
    ``overrides`` (dotted keys given with ``kedro run --params``) is said to come from
    the command line instead. ``context`` reaches the models' validators (e.g.
    ``reads_files``: whether the run reads the source at all). ``env``: the run's Kedro
    environment (default ``local``), whose files the sentence may name.
    """
    if isinstance(raw, model):
        return raw
    if raw is not None and not isinstance(raw, Mapping):
        where = (_where_set(group.split("."), env)
                 or f"parameters_{group.partition('.')[0]}.yml")
        raise LifecycleError(f"Parameter group '{group}' in {where} is {raw!r}, not keys "
                             "and values: write it as a mapping (e.g. `epochs: 3` under it).")
    try:
        # validators name keys by the group they were given as (`source.ingest.path`)
        return model.model_validate(dict(raw or {}), context={"group": group,
                                                              **(context or {})})
    except ValidationError as exc:
        raise LifecycleError(_sentence(model, exc, group, overrides, env)) from None


def dotted_keys(tree: Mapping[str, Any], prefix: str = "") -> frozenset[str]:
    """Every key of a nested mapping and its ancestors, dotted: ``{"a": {"b": 1}}`` →
    ``{"a", "a.b"}`` (a key given already dotted stays as it is)."""
    keys: set[str] = set()
    for name, value in tree.items():
        key = f"{prefix}{name}"
        parts = key.split(".")
        keys |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
        if isinstance(value, Mapping):
            keys |= dotted_keys(value, f"{key}.")
    return frozenset(keys)


def _sentence(model: type[BaseModel], exc: ValidationError, group: str,
              overrides: frozenset[str], env: str | None) -> str:
    error = exc.errors()[0]
    # pydantic names the branch of a union it tried (`epochs.int`): not a key
    loc = [str(part) for part in error["loc"] if not _TYPE_TAG.search(str(part))]
    key = ".".join([group, *loc])
    given = [".".join([group, *loc[:i]]) for i in range(len(loc), 0, -1)]
    if not loc:  # a rule of the whole group (its message names the keys): any given there
        given = [k for k in overrides if k.startswith(f"{group}.")]
    # source.ingest lives in parameters_source.yml
    where = ("the command line (kedro run --params)" if any(k in overrides for k in given)
             else _where_set([*group.split("."), *loc], env)
             or f"parameters_{group.split('.', maxsplit=1)[0]}.yml")
    if error["type"] == "extra_forbidden":
        allowed = ", ".join(_fields_at(model, loc[:-1]))
        return (
            f"Unknown parameter '{key}' in {where}: remove it or fix its spelling "
            f"(allowed keys here: {allowed})."
        )
    if error["type"] == "missing":
        return f"Missing parameter '{key}' in {where}: add it."
    message = error["msg"].removeprefix("Value error, ").rstrip(".")
    value = error.get("input")
    shown = "" if isinstance(value, Mapping) else f" = {value!r}"  # a group: its rule says
    if error["type"] in ("list_type", "tuple_type", "set_type") and isinstance(value, str):
        # `--params explain.methods=occlusion`: a list is written in brackets
        message = f"give a list in brackets, e.g. {key}=[{value}]"
    elif isinstance(value, str) and _wants_list(model, loc):
        # a union of one word and a list (corruptions: all | [names]): say the list form
        message += f" (or a list in brackets, e.g. {key}=[{value}])"
    return f"Invalid parameter '{key}'{shown} in {where}: {message}."


def _wants_list(model: type[BaseModel], loc: list[str]) -> bool:
    """Whether the field at ``loc`` takes a word or a list (``all`` | [names]): a word
    that is neither is then likely meant as the list's one entry. (A number or a list,
    as `ingest.image_size`, is not: `[abc]` would not help.)"""
    field = None
    for part in loc:
        fields = getattr(model, "model_fields", {})
        if part not in fields:
            return False
        field = fields[part]
        inner = [a for a in typing.get_args(field.annotation) if isinstance(a, type)
                 and issubclass(a, BaseModel)] or [field.annotation]
        model = inner[0]
    if field is None:
        return False
    text = str(field.annotation)
    return "Literal" in text and ("tuple" in text or "list" in text)


_TYPE_TAG = re.compile(r"^(int|float|str|bool|bytes|none|dict|list|tuple|set)$|\[|^function-"
                       r"|^(lax|strict|constrained|json-or-python|is-instance|literal)")


def dropped_by_env(groups: Mapping[str, BaseModel], env: str | None,
                   overrides: frozenset[str] = frozenset()) -> list[str]:
    """One sentence per key that a group of ``conf/<env>`` leaves out and ``conf/base``
    sets, where that changes the value the run uses: Kedro replaces a whole top-level
    group of base with the environment's (its default "destructive" merge), so a key the
    environment's group omits takes the code's default, not base's. Keys given with
    ``kedro run --params`` (``overrides``) are the user's own choice."""
    conf = Path.cwd() / "conf"
    env = env or "local"
    if not conf.is_dir() or env == "base":
        return []
    sentences = []
    for group, used in groups.items():
        if "." in group:  # a namespace's group (source.ingest): its own files
            continue
        base, base_file = _group_in(conf, "base", group)
        given, env_file = _group_in(conf, env, group)
        if base is None or given is None:
            continue
        try:
            from_base = type(used).model_validate(base, context={"reads_files": False})
        except ValidationError:
            continue
        for key in sorted(set(base) - set(given) - {k.partition(".")[2] for k in overrides
                                                    if k.startswith(f"{group}.")}):
            if key in type(used).model_fields and \
                    getattr(from_base, key) != getattr(used, key):
                sentences.append(
                    f"{env_file} gives the '{group}' group without {key} ({base[key]!r} in "
                    f"{base_file}), so the run uses {getattr(used, key)!r}: an environment's "
                    "group replaces base's whole group; add the key to keep base's value.")
    return sentences


def _parameter_files(conf: Path, folder: str) -> Iterator[tuple[Path, Any]]:
    """Each parameters file of ``conf/<folder>`` (sorted) with its YAML; a file that
    cannot be read or parsed is passed over (Kedro's loader reports it)."""
    for file in sorted((conf / folder).rglob("parameters*.y*ml")):
        try:
            yield file, yaml.safe_load(file.read_text())
        except (OSError, yaml.YAMLError):
            continue


def _group_in(conf: Path, folder: str, group: str) -> tuple[dict | None, str | None]:
    """The first file of ``conf/<folder>`` that sets ``group``: its mapping and path."""
    for file, tree in _parameter_files(conf, folder):
        if isinstance(tree, Mapping) and isinstance(tree.get(group), Mapping):
            return dict(tree[group]), file.relative_to(conf.parent).as_posix()
    return None, None


def _where_set(path: list[str], env: str | None) -> str | None:
    """The parameters file of ``conf/base`` or ``conf/<env>`` (from the project folder,
    where Kedro runs) that sets the longest part of ``path``, the environment's before
    ``base``'s; None when none does (a caller outside a project)."""
    conf = Path.cwd() / "conf"
    if not conf.is_dir():
        return None
    best: tuple[int, bool, str] | None = None
    for file, tree in (found for folder in ("base", env or "local")
                       for found in _parameter_files(conf, folder)):
        node, depth = tree, 0
        for part in path:
            if not isinstance(node, Mapping) or part not in node:
                break
            node, depth = node[part], depth + 1
        candidate = (depth, file.parent.name != "base", file.relative_to(conf.parent).as_posix())
        if depth and (best is None or candidate[:2] > best[:2]):
            best = candidate
    return best[2] if best else None


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
