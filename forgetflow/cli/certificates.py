"""`forgetflow audit certificate REQUEST` and `forgetflow audit verify-certificate FILE`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from forgetflow.cli.common import WorkspaceOption, console, settings_for, text


def certificate_command(
    request_id: Annotated[str, typer.Argument(help="An erased request.")],
    out: Annotated[Optional[Path], typer.Option("--out", help="Folder for <request>.json and .html. Default: reports/audit/certificates.")] = None,
    recheck: Annotated[bool, typer.Option("--recheck/--no-recheck", help="Re-scan every copy for the erased data before issuing.")] = True,
    workspace: WorkspaceOption = None,
) -> None:
    """Issue a deletion certificate: request, data versions, model, gate evidence, erasure proof, ledger entries."""
    from forgetflow.certificate import write_certificate

    json_path, html_path = write_certificate(settings_for(workspace, existing=True), request_id, out, recheck=recheck)
    console.print(f"certificate: {text(json_path)}\n             {text(html_path)}")


def verify_certificate_command(
    file: Annotated[Path, typer.Argument(help="A certificate .json file.")],
    rescan: Annotated[bool, typer.Option("--rescan/--no-rescan", help="Also re-scan every copy for the erased data.")] = True,
    workspace: WorkspaceOption = None,
) -> None:
    """Re-check a certificate against the workspace (ledger chain and anchors, MLflow tags, tombstone); name any mismatch."""
    from forgetflow.certificate import load_certificate, verify_certificate

    settings = settings_for(workspace, existing=True)
    doc = load_certificate(file)
    problems = verify_certificate(settings, doc, rescan=rescan)
    request_id = (doc.get("request") or {}).get("request_id")
    if not problems:
        console.print(f"[green]certificate holds[/] for request {text(request_id)}: seal, ledger entries, anchors, MLflow lineage and tombstone agree")
        return
    console.print(f"[bold red]certificate does not hold[/] for request {text(request_id)}:")
    for problem in problems:
        console.print(f"  - {text(problem)}", soft_wrap=True)
    raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    from forgetflow.cli.deletion import audit_app

    audit_app.command("certificate")(certificate_command)
    audit_app.command("verify-certificate")(verify_certificate_command)
