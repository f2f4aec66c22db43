"""The `forgetflow` command line. Heavy libraries are imported inside commands, never here,
so `forgetflow --help` answers in well under a second."""

from __future__ import annotations

import sys

import typer

from forgetflow.cli.common import console, fail

app = typer.Typer(
    name="forgetflow",
    help="Machine unlearning for PyTorch image classifiers: Prefect flows, DVC data versions, Great Expectations validation, MLflow lineage.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Each topic registers its commands on `app` (kept in its own module).
from forgetflow.cli import data as _data  # noqa: E402,F401
from forgetflow.cli import pipeline as _pipeline  # noqa: E402,F401
from forgetflow.cli import models as _models  # noqa: E402,F401
# --- topic modules added by later issues go below this line (one import each) ---


def main() -> None:
    from forgetflow.errors import ForgetflowError

    try:
        app()
    except ForgetflowError as exc:
        fail(exc)
        sys.exit(2)


__all__ = ["app", "main", "console"]
