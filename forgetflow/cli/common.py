"""Shared CLI pieces: the --workspace option, settings loading, error printing."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)

WorkspaceOption = Annotated[
    Optional[Path],
    typer.Option("--workspace", "-w", help="Workspace folder (data/, mlflow/, params.yaml). Default: FORGETFLOW_WORKSPACE or the repository root.", show_default=False),
]


def settings_for(workspace: Path | None):
    from forgetflow.settings import load_settings

    return load_settings(workspace)


def use_prefect_defaults(settings) -> None:
    """Keep Prefect's embedded server inside the workspace unless the user configured Prefect."""
    for key, value in settings.prefect_environment().items():
        os.environ[key] = value
    Path(os.environ.get("PREFECT_HOME", Path.home() / ".prefect")).expanduser().mkdir(parents=True, exist_ok=True)


def fail(exc) -> None:
    err_console.print(f"[bold red]error:[/] {exc.message}")
    if getattr(exc, "hint", None):
        err_console.print(f"[yellow]fix:[/] {exc.hint}")
