"""``kedro run`` with bad input reported as one sentence instead of a traceback.

Kedro loads this module's ``cli`` group and lets it override its own commands.
"""

from __future__ import annotations

import functools

import click
from kedro.framework.cli.project import run as kedro_run

from model_lifecycle.errors import LifecycleError


def _one_sentence(callback):
    @functools.wraps(callback)
    def wrapper(*args, **kwargs):
        try:
            return callback(*args, **kwargs)
        except LifecycleError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


@click.group(name="model-lifecycle")
def cli() -> None:
    """Project commands."""


cli.add_command(click.Command(
    name="run",
    params=kedro_run.params,
    callback=_one_sentence(kedro_run.callback),
    help=kedro_run.help,
    short_help=kedro_run.short_help,
))
