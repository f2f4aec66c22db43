"""`forgetflow model ...`: registered versions and their lineage."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from forgetflow.cli.common import WorkspaceOption, console, settings_for, text

model_app = typer.Typer(help="Registered model versions and their lineage.", no_args_is_help=True)


@model_app.command("list")
def list_command(workspace: WorkspaceOption = None) -> None:
    """Every version of the registered model with aliases, data md5 and test accuracy."""
    from mlflow import MlflowClient
    from rich.table import Table

    from forgetflow.tracking import configure

    settings = settings_for(workspace, existing=True)
    configure(settings)
    client = MlflowClient()
    versions = client.search_model_versions(f"name='{settings.registered_model_name}'", order_by=["version_number DESC"])
    from forgetflow.deletion.registry import version_aliases

    aliases = version_aliases(settings)  # search_model_versions returns aliases=[]
    table = Table(title=text(settings.registered_model_name))
    for column in ("version", "aliases", "stage", "data md5", "parent", "test acc", "created"):
        table.add_column(column)
    for mv in versions:
        run = client.get_run(mv.run_id)
        acc = run.data.metrics.get("test_accuracy")
        # MLflow 3.17 gives versions as int: every cell is made a string (and escaped) here.
        table.add_row(
            text(mv.version),
            text(", ".join(aliases.get(str(mv.version), []))),
            text(mv.tags.get("forgetflow.role", mv.tags.get("forgetflow.stage", ""))),
            text(mv.tags.get("forgetflow.data_md5", "")),
            text(mv.tags.get("forgetflow.parent_version", "")),
            f"{acc:.2f}%" if acc is not None else "",
            _format_time(mv.creation_timestamp),
        )
    console.print(table)


@model_app.command("show")
def show_command(
    version: Annotated[Optional[str], typer.Argument(help="Version number; default: the champion.")] = None,
    workspace: WorkspaceOption = None,
) -> None:
    """One version's lineage tags, metrics and the dataset it was trained on."""
    from mlflow import MlflowClient
    from rich.table import Table

    from forgetflow.tracking import configure

    settings = settings_for(workspace, existing=True)
    configure(settings)
    client = MlflowClient()
    name = settings.registered_model_name
    mv = client.get_model_version(name, version) if version else client.get_model_version_by_alias(name, "champion")
    run = client.get_run(mv.run_id)
    table = Table(title=text(f"{name} v{mv.version}"), show_header=False, title_justify="left")
    table.add_row("aliases", text(", ".join(map(str, mv.aliases)) or "-"))
    table.add_row("source", text(mv.source))
    table.add_row("run", text(mv.run_id))
    for key, value in sorted(mv.tags.items()):
        table.add_row(text(key), text(value))
    for key, value in sorted(run.data.metrics.items()):
        table.add_row(text(f"metric {key}"), f"{value:.4f}")
    for dataset_input in run.inputs.dataset_inputs:
        table.add_row("dataset input", text(f"{dataset_input.dataset.name} digest={dataset_input.dataset.digest}"))
    console.print(table)


def _format_time(ms: int) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def register(app: typer.Typer) -> None:
    app.add_typer(model_app, name="model")
