"""Top-level pipeline commands: init, bootstrap, demo, ui."""

from __future__ import annotations

import time
from typing import Annotated, Optional

import typer

from forgetflow.cli.common import WorkspaceOption, console, settings_for, use_prefect_defaults


def init(workspace: WorkspaceOption = None) -> None:
    """Create a workspace: data/, mlflow/, params.yaml (defaults), dvc.yaml and a DVC repository."""
    from forgetflow.data.importer import dvc_workspace
    from forgetflow.workspace import init_workspace

    settings = settings_for(workspace)
    init_workspace(settings)
    dvc_workspace(settings).ensure()
    console.print(f"[green]workspace ready[/] at {settings.workspace}")


def bootstrap(
    source: Annotated[str, typer.Argument(help="digits | fashion-mnist | mnist | cifar10 | imagefolder")] = "digits",
    path: Annotated[Optional[str], typer.Argument(help="Folder with the source files.")] = None,
    download: Annotated[bool, typer.Option(help="Let torchvision download the files (needs network).")] = False,
    reimport: Annotated[bool, typer.Option(help="Re-import the source even if the workspace has it.")] = False,
    force: Annotated[bool, typer.Option(help="Register a new base model even if a champion exists.")] = False,
    workspace: WorkspaceOption = None,
) -> None:
    """Run the bootstrap flow: version data, train, evaluate, register the base model as champion."""
    settings = settings_for(workspace)
    summary = _run_bootstrap(settings, source, path, download=download, reimport=reimport, force=force)
    print_summary(settings, summary)


def demo(workspace: WorkspaceOption = None) -> None:
    """The embedded-default demo: bootstrap on digits in the workspace, then print where to look."""
    settings = settings_for(workspace)
    summary = _run_bootstrap(settings, "digits", None, download=False, reimport=False, force=False)
    print_summary(settings, summary)


def ui(workspace: WorkspaceOption = None) -> None:
    """Print the commands that open the MLflow and Prefect UIs on this workspace."""
    print_ui_commands(settings_for(workspace))


def _run_bootstrap(settings, source, path, *, download, reimport, force) -> dict:
    from forgetflow.errors import ForgetflowError
    from forgetflow.tracking import current_version

    use_prefect_defaults(settings)
    champion = current_version(settings)
    if champion is not None and not force:
        console.print(
            f"[yellow]already bootstrapped:[/] {champion['name']} version {champion['version']} is the champion "
            f"(data md5 {champion['tags'].get('forgetflow.data_md5', '?')}). Use `forgetflow bootstrap --force` to register a new base model."
        )
        return {"existing": champion}
    from flows.bootstrap import bootstrap as bootstrap_flow

    started = time.perf_counter()
    console.print(f"[bold]forgetflow bootstrap[/] on [cyan]{source}[/] in {settings.workspace}")
    try:
        summary = bootstrap_flow(workspace=str(settings.workspace), source=source, source_path=path, download=download, reimport=reimport)
    except ForgetflowError:
        raise
    summary["seconds"] = time.perf_counter() - started
    return summary


def print_summary(settings, summary: dict) -> None:
    from rich.table import Table

    if "existing" in summary:
        print_ui_commands(settings)
        return
    data, reg, m = summary["dataset"], summary["registration"], summary["metrics"]
    table = Table(title="forgetflow bootstrap", show_header=False, title_justify="left")
    table.add_row("dataset", f"{data['name']}: {data['n_samples']} samples {data['splits']}")
    table.add_row("data version (DVC md5)", data["md5"])
    table.add_row("registered model", f"{reg['name']} v{reg['version']}  aliases: {', '.join(reg['aliases'])}")
    table.add_row("accuracy train/val/test", f"{m['train_accuracy']:.2f}% / {m['val_accuracy']:.2f}% / {m['test_accuracy']:.2f}%")
    table.add_row("MLflow run", reg["run_id"])
    table.add_row("Prefect flow run", summary["flow_run_id"])
    table.add_row("device", summary["device"])
    table.add_row("wall time", f"{summary['seconds']:.1f} s")
    console.print(table)
    print_ui_commands(settings)


def print_ui_commands(settings) -> None:
    import os

    prefect_home = os.environ.get("PREFECT_HOME") or settings.prefect_environment().get("PREFECT_HOME", "~/.prefect")
    console.print("\n[bold]Look around:[/]")
    console.print(f"  MLflow UI : mlflow ui --backend-store-uri {settings.tracking_uri} --port 5000   -> http://127.0.0.1:5000")
    console.print(f"  Prefect UI: PREFECT_HOME={prefect_home} prefect server start   -> http://127.0.0.1:4200")
    console.print(f"  Data      : forgetflow data show digits -w {settings.workspace}   |   dvc status / dvc metrics show (in the workspace)")


def register(app: typer.Typer) -> None:
    app.command()(init)
    app.command()(bootstrap)
    app.command()(demo)
    app.command()(ui)
