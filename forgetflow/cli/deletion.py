"""`forgetflow process`, `forgetflow erasure verify`, `forgetflow audit ...`."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from forgetflow.cli.common import WorkspaceOption, console, settings_for, text, use_prefect

erasure_app = typer.Typer(help="Prove that forgotten data is gone.", no_args_is_help=True)
audit_app = typer.Typer(help="Audit requests and model versions from the ledger and MLflow.", no_args_is_help=True)


def process(
    request: Annotated[Optional[list[str]], typer.Option("--request", "-r", help="Only these request IDs (repeatable). Default: every pending request.")] = None,
    method: Annotated[Optional[str], typer.Option(help="Override the policy's method for the groups it serves.")] = None,
    wait: Annotated[float, typer.Option(min=0, help="Seconds to wait while another run holds the workspace; then stop with 'workspace busy' (exit 2).")] = 0.0,
    workspace: WorkspaceOption = None,
) -> None:
    """Run the deletion flow on the pending requests: validate, version, unlearn, gate, promote, erase."""
    settings = settings_for(workspace, existing=True)
    if request:
        _check_known(settings, request)
    if wait == 0:
        from forgetflow.service.limits import workspace_busy

        if busy := workspace_busy(settings):
            raise busy  # before a server starts: a live run holds the workspace
    use_prefect(settings)
    from flows.deletion import process_deletions
    from forgetflow.deletion.promotion import summary_markdown

    summaries = process_deletions(workspace=str(settings.workspace), request_ids=request or None, method=method, wait_s=wait)
    if not summaries:
        console.print("no pending requests")
    from rich.markdown import Markdown

    for summary in summaries:
        console.print(Markdown(summary_markdown(summary)))


def _check_known(settings, request_ids: list[str]) -> None:
    """Unknown request IDs are a typo: say so before any server or flow starts."""
    from forgetflow.requests.intake import open_ledger
    from forgetflow.requests.schema import RequestError

    statuses = open_ledger(settings).statuses()
    unknown = [rid for rid in request_ids if rid not in statuses]
    if unknown:
        raise RequestError(f"unknown request IDs: {', '.join(unknown)}", "list requests with `forgetflow request list`")


@erasure_app.command("verify")
def erasure_verify(request_id: Annotated[str, typer.Argument(help="An erased request.")], workspace: WorkspaceOption = None) -> None:
    """Re-check that none of the request's samples survives: current manifest, DVC cache and remote, scratch."""
    from forgetflow.deletion.verify import verify_request

    settings = settings_for(workspace, existing=True)
    result = verify_request(settings, request_id)
    if result["ok"]:
        console.print(f"[green]verified[/] {text(request_id)}: {result['n_hashes']} erased images, {result['objects_scanned']} DVC objects scanned, no copy found; tombstone intact")
        return
    console.print(f"[red]NOT verified[/] {text(request_id)}:")
    for problem in result["problems"]:
        console.print(f"  - {text(problem)}")
    raise typer.Exit(1)


@audit_app.command("request")
def audit_request_command(request_id: str, as_json: Annotated[bool, typer.Option("--json")] = False, workspace: WorkspaceOption = None) -> None:
    """A request's history, the version that first excludes it, and its gate evidence."""
    from forgetflow.audit import audit_request

    audit = audit_request(settings_for(workspace, existing=True), request_id)
    if as_json:
        console.print_json(json.dumps(audit.as_dict(), default=str))
        return
    console.print(f"[bold]request {text(audit.request_id)}[/]: {text(audit.state)}" + (f" (batch {text(audit.batch_id)})" if audit.batch_id else ""))
    for entry in audit.history:
        extras = {k: v for k, v in entry.items() if k in ("reason", "method", "gate_passed", "champion_version", "candidate_version", "verified", "outcome")}
        console.print(f"  {text(entry['at'])}  {text(entry['event']):<10} {text(extras) if extras else ''}")
    if audit.ladder:
        print_ladder(audit.ladder)
    if audit.excluded_by_version:
        console.print(f"first excluded by model version [bold]v{text(audit.excluded_by_version)}[/]")
    if audit.gate:
        console.print(f"gate: {text(audit.gate)}")
    if audit.erasure:
        console.print(f"erasure: verified={text(audit.erasure.get('verified'))}, objects removed {text(audit.erasure.get('objects_removed'))}")
    for finding in audit.findings:
        console.print(f"[red]finding:[/] {text(finding)}")
    if audit.findings:
        raise typer.Exit(1)


def print_ladder(ladder: dict, title: str = "method ladder") -> None:
    from rich.markup import escape
    from rich.table import Table

    promoted = ladder.get("promoted_rung")
    verdict = f"rung {promoted + 1} promoted" if promoted is not None else "every rung failed"
    table = Table(title=f"{title} ({escape(str(ladder.get('ladder_source') or ''))}): {verdict}", title_justify="left")
    for column in ("rung", "try", "method", "seconds", "gate"):
        table.add_column(column, overflow="fold")
    for step in ladder.get("ladder") or []:
        gate = ("[green]PASS[/] " if step.get("passed") else "[red]fail[/] ") + escape(str(step.get("reason", "")))
        table.add_row(text(step["index"] + 1), text(step.get("attempt", 0) + 1), escape(str(step["method"])), f"{step.get('seconds', 0):.1f}", gate)
    console.print(table)


@audit_app.command("batch")
def audit_batch_command(batch_id: Annotated[str, typer.Argument(help="A batch ID (see `forgetflow audit request ID`).")], as_json: Annotated[bool, typer.Option("--json")] = False, workspace: WorkspaceOption = None) -> None:
    """The method ladders a batch climbed: every rung tried, its gate verdict, the promoted rung."""
    from forgetflow.audit import batch_ladders

    groups = batch_ladders(settings_for(workspace, existing=True), batch_id)
    if as_json:
        typer.echo(json.dumps(groups, indent=2, default=str))
        return
    for group in groups:
        print_ladder(group, title=f"{text(batch_id)}: {len(group['requests'])} request(s)")


@audit_app.command("model")
def audit_model_command(version: Annotated[Optional[str], typer.Argument(help="Default: the champion.")] = None, workspace: WorkspaceOption = None) -> None:
    """The chain of versions and batches back to the first training data."""
    from rich.table import Table

    from forgetflow.audit import model_chain
    from forgetflow.deletion.registry import alias_version

    settings = settings_for(workspace, existing=True)
    version = version or alias_version(settings, "champion")
    chain, findings = model_chain(settings, version)
    table = Table(title=f"lineage of v{text(version)}")
    for column in ("version", "role", "batch", "method", "data md5", "aliases", "test acc"):
        table.add_column(column)
    for link in chain:
        acc = link["test_accuracy"]
        table.add_row(*(text(cell) for cell in (f"v{link['version']}", link["role"] or "", link["batch_id"] or "", link["method"] or "", (link["data_md5"] or "")[:12], ",".join(map(str, link["aliases"])))), f"{acc:.2f}%" if acc is not None else "")
    console.print(table)
    for finding in findings:
        console.print(f"[red]finding:[/] {text(finding)}")
    if findings:
        raise typer.Exit(1)


@audit_app.command("report")
def audit_report_command(workspace: WorkspaceOption = None) -> None:
    """Write an HTML audit report (lineage graph, metric trends, ledger verification)."""
    from forgetflow.audit import audit_report

    path = audit_report(settings_for(workspace, existing=True))
    console.print(f"audit report: {text(path)}")


def register(app: typer.Typer) -> None:
    app.command()(process)
    app.add_typer(erasure_app, name="erasure")
    app.add_typer(audit_app, name="audit")
