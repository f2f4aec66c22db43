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


def verify(
    if_due: Annotated[bool, typer.Option("--if-due", help="Only when a quarantine deadline is near or the reference policy's schedule says so (what the served deployment runs).")] = False,
    list_only: Annotated[bool, typer.Option("--list", help="Only list the batches waiting in quarantine, with their deadlines.")] = False,
    wait: Annotated[float, typer.Option(min=0, help="Seconds to wait while another run holds the workspace; then stop with 'workspace busy' (exit 2).")] = 0.0,
    workspace: WorkspaceOption = None,
) -> None:
    """Verify the provisional champion with a retrained reference: every pending batch's forget set and their union; pass -> erase, fail -> promote the reference."""
    settings = settings_for(workspace, existing=True)
    if list_only:
        from forgetflow.deletion.quarantine import quarantine_report

        rows = quarantine_report(settings)
        console.print(f"{len(rows)} batch(es) in quarantine" + (":" if rows else ""))
        for row in rows:
            left = row["seconds_left"]
            when = "no deadline recorded" if left is None else (f"deadline passed {-left / 3600:.1f} h ago" if left < 0 else f"{left / 3600:.1f} h to its deadline")
            console.print(f"  {text(row['batch_id'])}  champion v{text(row['champion_version'])}  {len(row['requests'])} request(s)  {when}")
        return
    if wait == 0:
        from forgetflow.service.limits import workspace_busy

        if busy := workspace_busy(settings):
            raise busy
    use_prefect(settings)
    from rich.markdown import Markdown

    from flows.verify import summary_markdown, verify_pending

    summary = verify_pending(workspace=str(settings.workspace), if_due=if_due, wait_s=wait)
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

    settings = settings_for(workspace, existing=True)
    audit = audit_request(settings, request_id)
    from forgetflow.clocks import request_clocks
    from forgetflow.requests.intake import open_ledger

    clocks = request_clocks(open_ledger(settings).entries(), request_id)
    if as_json:
        console.print_json(json.dumps({**audit.as_dict(), "clocks": clocks}, default=str))
        return
    console.print(f"[bold]request {text(audit.request_id)}[/]: {text(audit.state)}" + (f" (batch {text(audit.batch_id)})" if audit.batch_id else ""))
    if audit.request:
        r = audit.request
        console.print(f"  {text(r.get('kind'))}/{text(r.get('goal'))}, {text(r.get('n_targets'))} target(s); reason: {text(r.get('reason'))}; requested by {text(r.get('requested_by'))}")
    if audit.rejection:
        console.print(f"[red]rejected:[/] {text(audit.rejection)}")
    for entry in audit.history:
        extras = {k: v for k, v in entry.items() if k in ("reason", "method", "gate_passed", "champion_version", "candidate_version", "verified", "outcome")}
        console.print(f"  {text(entry['at'])}  {text(entry['event']):<10} {text(extras) if extras else ''}")
    if audit.ladder:
        print_ladder(audit.ladder)
    if audit.excluded_by_version:
        console.print(f"first excluded by model version [bold]v{text(audit.excluded_by_version)}[/]")
    print_clocks(clocks)
    if audit.gate:
        console.print(f"gate: {text(audit.gate)}")
    if audit.erasure:
        console.print(f"erasure: verified={text(audit.erasure.get('verified'))}, objects removed {text(audit.erasure.get('objects_removed'))}")
    for finding in audit.findings:
        console.print(f"[red]finding:[/] {text(finding)}")
    if audit.findings:
        raise typer.Exit(1)


def print_clocks(clocks: dict) -> None:
    """The two clocks: compliant (a deployed model excludes the data) and verified (a reference confirmed it)."""

    def took(seconds) -> str:
        return "" if seconds is None else f" ({seconds / 3600:.2f} h after submission)" if seconds >= 3600 else f" ({seconds:.1f} s after submission)"

    console.print(f"compliant: {text(clocks['compliant_at'] or 'not yet')}{took(clocks['time_to_compliance_s'])}")
    console.print(f"verified:  {text(clocks['verified_at'] or 'not yet')}{took(clocks['time_to_verification_s'])}" + (f" [{text(clocks['verification'])}]" if clocks.get("verification") else ""))
    console.print(f"erased:    {text(clocks['erased_at'] or 'not yet')}")


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
    for column in ("version", "role", "batch", "method", "gate", "data md5", "aliases", "weights", "test acc"):
        table.add_column(column)
    for link in chain:
        acc = link["test_accuracy"]
        cells = (f"v{link['version']}", link["role"] or "", link["batch_id"] or "", link["method"] or "", link.get("gate") or "", (link["data_md5"] or "")[:12], ",".join(map(str, link["aliases"])), link.get("weights") or "")
        table.add_row(*(text(cell) for cell in cells), f"{acc:.2f}%" if acc is not None else "")
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
    app.command()(verify)
    app.add_typer(erasure_app, name="erasure")
    app.add_typer(audit_app, name="audit")
