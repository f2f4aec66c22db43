"""`forgetflow workspace ...`: a workspace that was moved or copied (forgetflow/relocation.py decides)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from forgetflow.cli.common import WorkspaceOption, console, text

workspace_app = typer.Typer(help="Moved or copied workspaces.", no_args_is_help=True)


@workspace_app.command("relocate")
def relocate_command(
    old_root: Annotated[Optional[Path], typer.Option("--from", help="The path the workspace was at. Default: the one recorded in .forgetflow/workspace.json (or, for an older workspace, the one its stores show).", show_default=False)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report what would be rewritten; change nothing.")] = False,
    workspace: WorkspaceOption = None,
) -> None:
    """Rewrite what the workspace stores about its old path (MLflow locations, the DVC remote, deletion journals) to its current path.

    Every command does this by itself when it opens a moved or copied workspace; this command does it on request and says what it changed."""
    from forgetflow.relocation import relocate
    from forgetflow.settings import load_settings

    settings = load_settings(workspace, follow_moves=False)
    done = relocate(settings, old_root, dry_run=dry_run)
    console.print(text(done.line()), soft_wrap=True)
    if done.mlflow_skipped:
        console.print(f"  MLflow: {text(done.mlflow_skipped)}", soft_wrap=True)
    for change in done.dvc_changes:
        console.print(f"  DVC config {text(change)}", soft_wrap=True)
    if done.journal_files:
        console.print(f"  deletion journals: {done.journal_paths} paths in {done.journal_files} files")
    if done.service_record_dropped:
        console.print("  .forgetflow/service.json (the `forgetflow serve` of the old location) dropped: start `forgetflow serve` here if this copy is to be served")
    for column, count in sorted(done.mlflow_left.items()):
        console.print(f"  left as recorded: {count} value(s) of MLflow {text(column)} contain the old path's text but are not locations under it", soft_wrap=True)
    if dry_run:
        console.print("dry run: nothing was changed")


def register(app: typer.Typer) -> None:
    app.add_typer(workspace_app, name="workspace")
