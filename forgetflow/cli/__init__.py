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

# Each topic module keeps its commands and adds them with `register(app)`.
from forgetflow.cli import adoption, calibration, certificates, data, deletion, methods, models, pipeline, requests, service, workspace  # noqa: E402

for _topic in (pipeline, adoption, calibration, service, data, models, requests, deletion, certificates, methods, workspace):
    _topic.register(app)


def main() -> None:
    from forgetflow.errors import ForgetflowError

    try:
        app()
    except ForgetflowError as exc:
        fail(exc)
        sys.exit(2)


__all__ = ["app", "main", "console"]
