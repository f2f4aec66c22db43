"""Shared CLI pieces: the --workspace option, settings loading, the Prefect API, error printing.

Everything printed goes through Rich, which reads `[...]` as markup: a stored string (a request's
`requested_by`, a reason, a class name, a path) is passed through `text()` first, so it prints as
it is and can never break the output (`[/bold]` would otherwise raise MarkupError).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

# No emoji codes either: `:x:` in a stored string stays `:x:`.
console = Console(emoji=False)
err_console = Console(stderr=True, emoji=False)

WorkspaceOption = Annotated[
    Optional[Path],
    typer.Option("--workspace", "-w", help="Workspace folder (data/, mlflow/, params.yaml). Default: FORGETFLOW_WORKSPACE or the repository root.", show_default=False),
]


def text(value) -> str:
    """Any value as Rich text that prints literally (markup escaped)."""
    from rich.markup import escape

    return escape(str(value))


def settings_for(workspace: Path | None, *, existing: bool = False):
    """The settings for `--workspace`; `existing=True` refuses a folder that does not exist (a
    typo must not read as an empty workspace, or create one)."""
    from forgetflow.settings import load_settings

    settings = load_settings(workspace)
    if existing and not settings.workspace.is_dir():
        from forgetflow.errors import WorkspaceError

        raise WorkspaceError(f"workspace {settings.workspace} does not exist", "pass the right folder with --workspace DIR (or FORGETFLOW_WORKSPACE); `forgetflow init -w DIR` creates one")
    return settings


def use_prefect_defaults(settings) -> None:
    """Keep Prefect's files inside the workspace unless the user configured Prefect."""
    for key, value in settings.prefect_environment().items():
        os.environ[key] = value
    Path(os.environ.get("PREFECT_HOME", Path.home() / ".prefect")).expanduser().mkdir(parents=True, exist_ok=True)


def use_prefect(settings) -> None:
    """Before a command runs a flow (and before Prefect is imported): Prefect's files in the
    workspace, and an API to talk to (service/embedded.py: PREFECT_API_URL, the workspace's
    `forgetflow serve`, or a server of this command's own that dies with it)."""
    use_prefect_defaults(settings)
    from forgetflow.service.embedded import connect

    connect(settings)
    _no_tracebacks_for_user_errors()


class _UserErrorsWithoutTraceback(logging.Filter):
    """A ForgetflowError raised in a flow or task is a message for the user, printed once by
    `main`: Prefect's console lines about it keep their text but lose the traceback. The run's log
    on the server keeps the whole record (its API handler, on the child logger, has sent it before
    the record reaches the console handler on the root logger)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from forgetflow.errors import ForgetflowError

        if record.exc_info and isinstance(record.exc_info[1], ForgetflowError):
            record.exc_info, record.exc_text = None, None
        return True


def _no_tracebacks_for_user_errors() -> None:
    from prefect.logging.configuration import ensure_logging_setup
    from prefect.logging.handlers import PrefectConsoleHandler

    ensure_logging_setup()  # Prefect's handlers exist from here on (else from `import prefect.main`)
    for logger in (logging.getLogger(name) for name in ("", "prefect", "prefect.flow_runs", "prefect.task_runs")):
        for handler in logger.handlers:
            if isinstance(handler, PrefectConsoleHandler) and not any(isinstance(f, _UserErrorsWithoutTraceback) for f in handler.filters):
                handler.addFilter(_UserErrorsWithoutTraceback())


def fail(exc) -> None:
    """The message on one line (not wrapped at the terminal width), then the hint."""
    err_console.print(f"[bold red]error:[/] {text(exc.message)}", soft_wrap=True)
    if getattr(exc, "hint", None):
        err_console.print(f"[yellow]fix:[/] {text(exc.hint)}", soft_wrap=True)
