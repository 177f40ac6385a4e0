"""``kedro run`` with bad input reported as one sentence instead of a traceback, and
``--params`` that takes lists.

Kedro loads this module's ``cli`` group and lets it override its own commands.
"""

from __future__ import annotations

import errno
import functools
import re
import signal
from pathlib import Path
from typing import Any

import click
import kedro.runner
import yaml
from kedro.framework.cli.catalog import catalog as kedro_catalog
from kedro.framework.cli.project import run as kedro_run
from kedro.framework.cli.registry import registry as kedro_registry
from kedro.framework.cli.utils import _split_load_versions
from kedro.framework.project import settings
from kedro.io import DatasetError, DatasetNotFoundError
from omegaconf import OmegaConf

from model_lifecycle.errors import LifecycleError


def _one_sentence(callback):
    @functools.wraps(callback)
    def wrapper(*args, **kwargs):
        _stop_on_termination()
        try:
            _check_env(kwargs.get("env"), kwargs.get("conf_source"))
            _check_pipelines([*(kwargs.get("pipelines") or ()), kwargs.get("pipeline")])
            _check_runner(kwargs.get("runner"), kwargs.get("is_async"))
            return callback(*args, **kwargs)
        except LifecycleError as exc:
            raise click.ClickException(str(exc)) from None
        except yaml.YAMLError as exc:  # Kedro's config loader: a file that is not YAML
            raise click.ClickException(_yaml_sentence(exc)) from None
        except DatasetNotFoundError as exc:  # --load-versions of a dataset that is not one
            raise click.ClickException(
                f"{str(exc).strip().rstrip('.')}: `kedro catalog describe-datasets` lists "
                "the datasets.") from None
        except DatasetError as exc:
            if _about_a_file(cause := _file_cause(exc)):
                raise click.ClickException(_os_sentence(cause, str(exc))) from None
            if not (found := _CATALOG_ENTRY.match(str(exc))):
                raise
            raise click.ClickException(
                f"The catalog entry '{found['name']}' cannot be built "
                f"({found['reason'].strip().rstrip('.')}): fix it in conf/<env>/catalog.yml "
                "(this project's own dataset types are in model_lifecycle.io).") from None
        except ValueError as exc:
            message = str(exc).strip().rstrip(".")
            for start, sentence in _KEDRO_REFUSALS:
                if message.startswith(start):
                    raise click.ClickException(sentence.format(message=message)) from None
            raise
        except OSError as exc:
            if not _about_a_file(exc):
                raise
            raise click.ClickException(_os_sentence(exc)) from None
        except KeyboardInterrupt:
            _end_runs("KILLED")  # else MLflow's exit handler records it as FINISHED
            from model_lifecycle.hooks import RUNNING_NODE  # noqa: PLC0415 - loaded by now

            node = RUNNING_NODE[0] if RUNNING_NODE else "<node>"
            click.echo("Interrupted: the MLflow run is marked KILLED and every version saved "
                       f"before stays. To go on: `kedro run --from-nodes={node}`, with --params "
                       "<stage>.resume=true for a stage that writes a checkpoint (pretrain, "
                       "finetune).", err=True)
            raise

    return wrapper


# Kedro's ValueErrors that are about what the user typed: how each starts, and the one
# sentence said instead ({message}: Kedro's own, without its full stop).
_KEDRO_REFUSALS = (
    ("Pipeline does not contain",  # --nodes, --from-nodes …
     "{message}: `kedro registry describe <pipeline>` lists its nodes."),
    ("Pipeline contains no nodes after applying",  # --tags, --namespaces …
     "No node is left after the filters given (--tags, --namespaces, --from-inputs …; "
     "this project's nodes carry no tags): `kedro registry describe <pipeline>` lists the "
     "nodes, --nodes picks some."),
    ("Duplicate keys found in",  # the config loader: two files set one key
     "{message}: keep the key in one of the files."),
)

# Kedro's refusal of a catalog entry it cannot build (a misspelt `type:` …), whose
# advice to pip install kedro-datasets does not apply to this project's own types.
_CATALOG_ENTRY = re.compile(r"An exception occurred when parsing config for dataset "
                            r"'(?P<name>[^']+)':\s*(?P<reason>[^\n]*?\.)(\s|$)")


def _yaml_sentence(exc: yaml.YAMLError) -> str:
    """Kedro names the file of a syntax error; for the others (an undefined alias …)
    PyYAML's mark gives the line, and the file is one of conf/."""
    first = str(exc).strip().splitlines()[0].rstrip(".")
    mark = getattr(exc, "problem_mark", None)
    if "file" in first or mark is None:
        return f"{first}: fix the YAML of that file."
    problem = getattr(exc, "problem", None) or first
    return (f"{problem} at line {mark.line + 1}, column {mark.column + 1} of a YAML file "
            "under conf/: fix it.")


def _check_env(env: str | None, conf_source: Any) -> None:
    """An environment with no folder under conf/ is a typo: Kedro would run on base
    alone, and kedro-mlflow fall back to a local file store."""
    conf = Path(conf_source) if isinstance(conf_source, str) and conf_source else \
        Path.cwd() / settings.CONF_SOURCE
    if env and conf.is_dir() and not (conf / env).is_dir():
        known = sorted(p.name for p in conf.iterdir() if p.is_dir())
        raise LifecycleError(f"Unknown environment '{env}': the environments are "
                             f"{', '.join(known)} (folders under {conf}).")


def _check_pipelines(names: list[str | None]) -> None:
    from model_lifecycle import pipelines  # noqa: PLC0415

    known = sorted(p.name for p in Path(pipelines.__file__).parent.iterdir()
                   if (p / "pipeline.py").is_file())
    for name in filter(None, names):
        if name != "__default__" and name not in known:
            raise LifecycleError(f"Unknown pipeline '{name}': the pipelines are "
                                 f"{', '.join(known)} and __default__.")


# `kedro run --runner=…`: the runners this project's catalog works with
RUNNERS = ("SequentialRunner", "ThreadRunner")


def _check_runner(runner: str | None, is_async: bool | None) -> None:
    """ParallelRunner sends every dataset between processes, and this project hands
    models and reports from node to node in memory; ``--async`` saves in other threads,
    where MLflow (whose active run is per thread) would start runs of its own."""
    name = (runner or "SequentialRunner").rsplit(".", 1)[-1]
    if name == "ParallelRunner":
        raise LifecycleError(
            "ParallelRunner cannot run this project: its nodes hand models and reports to "
            "each other in memory, which cannot cross processes; run without --runner "
            "(SequentialRunner) or with --runner=ThreadRunner.")
    if runner and "." not in runner and not hasattr(kedro.runner, runner):
        raise LifecycleError(f"Unknown runner '{runner}': use {RUNNERS[0]} (the default) or "
                             f"{' or '.join(RUNNERS[1:])}, or give your own runner class's "
                             "dotted path.")
    if is_async:
        raise LifecycleError(
            "--async cannot be used with this project: it loads and saves datasets in "
            "other threads, where MLflow would log into runs of their own; run without "
            "--async.")


def _stop_on_termination() -> None:
    """SIGTERM (`timeout`, `docker stop`, a batch scheduler) and SIGHUP (a closed
    terminal) stop a run as Ctrl-C does: its MLflow run is marked KILLED, not left
    RUNNING."""
    def interrupt(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for name in ("SIGTERM", "SIGHUP"):  # (no SIGHUP on Windows)
        sig = getattr(signal, name, None)
        if sig is not None and signal.getsignal(sig) is not signal.SIG_IGN:  # nohup's
            signal.signal(sig, interrupt)


# What a file system says when a path cannot be read or written: the machine's state,
# not a bug of the project (other OSErrors keep their traceback).
_FILE_ERRNOS = frozenset({errno.ENOENT, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EROFS,
                          errno.EDQUOT, errno.EISDIR, errno.ENOTDIR, errno.EEXIST})


def _about_a_file(exc: BaseException | None) -> bool:
    return isinstance(exc, OSError) and (exc.errno in _FILE_ERRNOS
                                         or (exc.filename is not None and exc.errno is not None))


def _file_cause(exc: DatasetError) -> BaseException | None:
    """The error under a DatasetError, past the DatasetErrors Kedro wraps it in (a failed
    save is wrapped twice: the dataset's, then the catalog's)."""
    cause = exc.__cause__
    while isinstance(cause, DatasetError):
        cause = cause.__cause__
    return cause


def _os_sentence(exc: OSError, context: str | None = None) -> str:
    """A file the run could not read or write, said once: which, why, what to check."""
    where = f" '{exc.filename}'" if exc.filename else ""
    what = f"{context.strip().splitlines()[0].rstrip('.:')}: " if context else ""
    return (f"{what}{exc.strerror or exc}{where}: check that the path exists, can be "
            "written by this user and has free space, then run again (versions saved "
            "before are untouched).")


def _end_runs(status: str) -> None:
    import mlflow  # noqa: PLC0415 - only when a run was interrupted

    while mlflow.active_run() is not None:
        mlflow.end_run(status=status)


def split_params(ctx: click.Context | None, param: click.Parameter | None, value: Any) -> Any:
    """``--params "a.b=[1,2,3],c=x"`` as ``{"a": {"b": [1, 2, 3]}, "c": "x"}``.

    Kedro's own parser splits the text at every comma, so a list value
    (``fewshot.novel_classes=[cat,dog]``, ``ingest.image_size=[24,32]``) could not be
    given on the command line (kedro-org/kedro#2552, open). This one splits only at
    commas outside brackets, braces and quotes; each ``key=value`` then goes to
    OmegaConf's dot-list parser, as Kedro's does, so everything else reads the same.
    """
    if not isinstance(value, str):  # a dict from `kedro run --config`, or nothing
        return value
    dot_list = []
    for item in _top_level_items(value):
        key, equals, val = item.partition("=")
        if not equals:  # Kedro's help also allows key:value
            key, equals, val = item.partition(":")
        if not equals or not key.strip():
            raise click.BadParameter(
                f"'{item}' is not key=value (or key:value): give --params as "
                "\"key=value,other.key=[a,b]\"", ctx=ctx, param=param)
        dot_list.append(f"{key.strip()}={val.strip()}")
    return OmegaConf.to_container(OmegaConf.from_dotlist(dot_list))


def _top_level_items(text: str) -> list[str]:
    """``text`` split at the commas that are outside brackets, braces and quotes. A quote
    opens only where a value starts (after ``=``, ``[``, ``{`` or ``,``), so that an
    apostrophe inside a value (``/data/Bob's photos``) is a character."""
    items, current, depth, quote, starts = [], [], 0, "", True
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"" and starts:
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth = max(0, depth - 1)
        elif char == "," and depth == 0:
            items.append("".join(current))
            current, starts = [], True
            continue
        current.append(char)
        starts = char in "=[{," or (starts and char.isspace())
    items.append("".join(current))
    return [item.strip() for item in items if item.strip()]


def split_load_versions(ctx: click.Context | None, param: click.Parameter | None,
                        value: Any) -> dict[str, str]:
    """Kedro's ``--load-versions`` parser, whose refusal (a value without
    ``dataset:version``) reaches the terminal as ``NoneType: None`` and not its message:
    said as click's own bad-parameter sentence instead."""
    try:
        return _split_load_versions(ctx, param, value)
    except click.ClickException as exc:
        raise click.BadParameter(
            f"{exc.message.rstrip('.')} (a dataset's versions are the folder names under "
            "data/<layer>/<dataset>/)", ctx=ctx, param=param) from None


_OUR_PARSERS = {"params": (split_params, " Lists in brackets: key=[a,b]."),
                "load_versions": (split_load_versions, "")}


def _with_our_parsers(option: click.Parameter) -> click.Parameter:
    if option.name not in _OUR_PARSERS:
        return option
    callback, more_help = _OUR_PARSERS[option.name]
    copied = click.Option(option.opts, type=option.type, default=option.default,
                          multiple=option.multiple, help=f"{option.help}{more_help}",
                          callback=callback)
    copied.name = option.name
    return copied


@click.group(name="model-lifecycle")
def cli() -> None:
    """Project commands."""


def _checked(callback):
    """Kedro's other commands that take a pipeline or an environment (`kedro registry
    describe`, `kedro catalog describe-datasets -p …`, the ones the run's sentences
    recommend) refuse a name that does not exist in one sentence, as `kedro run` does,
    instead of a traceback (an ImportError, or MLflow's refusal of a file store)."""
    @functools.wraps(callback)
    def wrapper(*args, **kwargs):
        named = kwargs.get("pipeline", kwargs.get("name"))
        try:
            _check_env(kwargs.get("env"), None)
            _check_pipelines(list(named) if isinstance(named, list | tuple) else [named])
        except LifecycleError as exc:
            raise click.ClickException(str(exc)) from None
        return callback(*args, **kwargs)

    return wrapper


def _with_checks(group: click.Group) -> click.Group:
    checked = click.Group(name=group.name, help=group.help, short_help=group.short_help)
    for name, command in group.commands.items():
        checked.add_command(click.Command(
            name=name, params=command.params, callback=_checked(command.callback),
            help=command.help, short_help=command.short_help), name)
    return checked


cli.add_command(_with_checks(kedro_registry))
cli.add_command(_with_checks(kedro_catalog))
cli.add_command(click.Command(
    name="run",
    params=[_with_our_parsers(p) for p in kedro_run.params],
    callback=_one_sentence(kedro_run.callback),
    help=kedro_run.help,
    short_help=kedro_run.short_help,
))
