"""Top-level pipeline commands: init, bootstrap, demo, ui."""

from __future__ import annotations

import time
from typing import Annotated, Optional

import typer

from forgetflow.cli.common import WorkspaceOption, console, settings_for, text, use_prefect, use_prefect_defaults


def init(workspace: WorkspaceOption = None) -> None:
    """Create a workspace: data/, mlflow/, params.yaml (defaults), dvc.yaml and a DVC repository."""
    from forgetflow.data.importer import dvc_workspace
    from forgetflow.workspace import init_workspace

    settings = settings_for(workspace)
    init_workspace(settings)
    dvc_workspace(settings).ensure()
    console.print(f"[green]workspace ready[/] at {text(settings.workspace)}")


def bootstrap(
    source: Annotated[str, typer.Argument(help="digits | fashion-mnist | mnist | cifar10 | imagefolder | manifest")] = "digits",
    path: Annotated[Optional[str], typer.Argument(help="Folder with the source files (manifest: the CSV file).")] = None,
    download: Annotated[bool, typer.Option(help="Let torchvision download the files (needs network).")] = False,
    reimport: Annotated[bool, typer.Option(help="Re-import the source even if the workspace has it.")] = False,
    force: Annotated[bool, typer.Option(help="Register a new base model even if a champion exists.")] = False,
    calibrate: Annotated[bool, typer.Option("--calibrate", help="Then run `forgetflow calibrate` on the new champion.")] = False,
    workspace: WorkspaceOption = None,
) -> None:
    """Run the bootstrap flow: version data, train, evaluate, register the base model as champion."""
    settings = settings_for(workspace)
    summary = _run_bootstrap(settings, source, path, download=download, reimport=reimport, force=force)
    print_summary(settings, summary)
    if calibrate:
        use_prefect(settings)
        from flows.calibrate import calibrate as calibrate_flow
        from forgetflow.cli.calibration import print_ladders

        print_ladders(calibrate_flow(workspace=str(settings.workspace)))


def demo(workspace: WorkspaceOption = None) -> None:
    """The embedded-default demo: bootstrap on digits, then a deletion batch with an audit."""
    settings = settings_for(workspace)
    summary = _run_bootstrap(settings, "digits", None, download=False, reimport=False, force=False)
    print_summary(settings, summary, ui=False)
    run_demo_deletions(settings)
    print_ui_commands(settings)


DEMO_REQUESTS = ("demo-samples", "demo-subject", "demo-class", "demo-invalid")


def run_demo_deletions(settings) -> None:
    """Submit three demo requests and one invalid one (fixed IDs: a re-run is idempotent), run the
    deletion flow, print the gate and the audit of the subject request, write the HTML report."""
    from rich.markdown import Markdown

    from forgetflow.audit import audit_report, audit_request
    from forgetflow.data.store import DatasetVersion
    from forgetflow.requests.intake import open_ledger, submit

    statuses = open_ledger(settings).statuses()
    if not all(rid in statuses for rid in DEMO_REQUESTS):
        manifest = DatasetVersion(settings.data_dir / "digits").manifest
        train = manifest[manifest.split == "train"]
        base = {"reason": "demo: right to erasure", "requested_by": "forgetflow demo"}
        submit(settings, {**base, "request_id": "demo-samples", "kind": "samples", "ids": train.sample_id.iloc[:15].astype(int).tolist()})
        submit(settings, {**base, "request_id": "demo-subject", "kind": "subjects", "ids": [str(train.subject_id.iloc[40])]})
        submit(settings, {**base, "request_id": "demo-class", "kind": "classes", "ids": ["9"]})
        submit(settings, {**base, "request_id": "demo-invalid", "kind": "samples", "ids": [10**9]})
        console.print("\n[bold]Submitted 4 deletion requests[/] (15 samples, 1 subject, class 9, and one naming an unknown sample)")
    use_prefect(settings)
    from flows.deletion import process_deletions
    from forgetflow.deletion.promotion import summary_markdown

    for batch in process_deletions(workspace=str(settings.workspace)):
        console.print(Markdown(summary_markdown(batch)))
    audit = audit_request(settings, "demo-subject")
    console.print(f"\n[bold]Audit of request demo-subject[/]: {text(audit.state)}; first excluded by model version v{text(audit.excluded_by_version)}")
    for entry in audit.history:
        console.print(f"  {text(entry['at'])}  {text(entry['event'])}")
    if audit.gate:
        console.print(f"  gate: {'passed' if audit.gate.get('passed') else 'rejected'} - {text(audit.gate.get('reason'))}")
    if audit.erasure:
        console.print(f"  erasure verified: {text(audit.erasure.get('verified'))}")
    report = audit_report(settings)
    console.print(f"\n[bold]HTML audit report:[/] {text(report)}")


def ui(workspace: WorkspaceOption = None) -> None:
    """Print the commands that open the MLflow and Prefect UIs on this workspace."""
    print_ui_commands(settings_for(workspace))


def _run_bootstrap(settings, source, path, *, download, reimport, force) -> dict:
    from forgetflow.tracking import current_version

    use_prefect_defaults(settings)
    champion = current_version(settings)
    if champion is not None and not force:
        console.print(
            f"[yellow]already bootstrapped:[/] {text(champion['name'])} version {text(champion['version'])} is the champion "
            f"(data md5 {text(champion['tags'].get('forgetflow.data_md5', '?'))}). Use `forgetflow bootstrap --force` to register a new base model."
        )
        return {"existing": champion}
    use_prefect(settings)
    from flows.bootstrap import bootstrap as bootstrap_flow

    started = time.perf_counter()
    console.print(f"[bold]forgetflow bootstrap[/] on [cyan]{text(source)}[/] in {text(settings.workspace)}")
    summary = bootstrap_flow(workspace=str(settings.workspace), source=source, source_path=path, download=download, reimport=reimport)
    summary["seconds"] = time.perf_counter() - started
    return summary


def print_summary(settings, summary: dict, ui: bool = True) -> None:
    from rich.table import Table

    if "existing" in summary:
        if ui:
            print_ui_commands(settings)
        return
    data, reg, m = summary["dataset"], summary["registration"], summary["metrics"]
    table = Table(title="forgetflow bootstrap", show_header=False, title_justify="left")
    table.add_row("dataset", text(f"{data['name']}: {data['n_samples']} samples {data['splits']}"))
    table.add_row("data version (DVC md5)", text(data["md5"]))
    table.add_row("registered model", text(f"{reg['name']} v{reg['version']}  aliases: {', '.join(map(str, reg['aliases']))}"))
    table.add_row("accuracy train/val/test", f"{m['train_accuracy']:.2f}% / {m['val_accuracy']:.2f}% / {m['test_accuracy']:.2f}%")
    table.add_row("MLflow run", text(reg["run_id"]))
    table.add_row("Prefect flow run", text(summary["flow_run_id"]))
    table.add_row("device", text(summary["device"]))
    table.add_row("wall time", f"{summary['seconds']:.1f} s")
    console.print(table)
    if ui:
        print_ui_commands(settings)


def print_ui_commands(settings) -> None:
    import os

    prefect_home = os.environ.get("PREFECT_HOME") or settings.prefect_environment().get("PREFECT_HOME", "~/.prefect")
    console.print("\n[bold]Look around:[/]")
    console.print(f"  MLflow UI : mlflow ui --backend-store-uri {text(settings.tracking_uri)} --port 5000   -> http://127.0.0.1:5000")
    console.print(f"  Prefect UI: PREFECT_HOME={text(prefect_home)} prefect server start   -> http://127.0.0.1:4200")
    console.print(f"  Service   : forgetflow serve -w {text(settings.workspace)}   (the same server + scheduled and urgent deployments)")
    console.print(f"  Data      : forgetflow data show -w {text(settings.workspace)}   |   dvc status / dvc metrics show (in the workspace)")


def register(app: typer.Typer) -> None:
    app.command()(init)
    app.command()(bootstrap)
    app.command()(demo)
    app.command()(ui)
