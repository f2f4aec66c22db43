"""`forgetflow request ...` (submit, list, show, inbox, validate) and `forgetflow ledger verify`.

Only typer and rich at import time; the ledger, pydantic models and Great Expectations load inside
the commands.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Optional

import typer

from forgetflow.cli.common import WorkspaceOption, console, settings_for

request_app = typer.Typer(help="Deletion requests: submit, list, show, process the inbox, validate.", no_args_is_help=True)
ledger_app = typer.Typer(help="The append-only request ledger.", no_args_is_help=True)

_STATE_STYLE = {"received": "cyan", "validated": "green", "rejected": "red", "failed": "red", "erased": "bold green", "promoted": "green"}


def register(app: typer.Typer) -> None:
    app.add_typer(request_app, name="request")
    app.add_typer(ledger_app, name="ledger")


def _split_ids(text: str) -> list[str]:
    """IDs separated by commas, whitespace or newlines; `#` starts a comment."""
    cleaned = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    return [token for token in re.split(r"[,\s]+", cleaned) if token]


def _typed(tokens: list[str], kind: str) -> list:
    if kind == "subjects":
        return tokens
    # Sample IDs are integers; classes may be names or indices (an all-digit token is an index).
    return [int(t) if re.fullmatch(r"\d+", t) else t for t in tokens]


@request_app.command("submit")
def submit_command(
    kind: Annotated[str, typer.Option("--kind", "-k", help="samples | subjects | classes")],
    reason: Annotated[str, typer.Option("--reason", help="Why (e.g. 'GDPR Art. 17 request of 2026-03-01').")],
    requested_by: Annotated[str, typer.Option("--requested-by", help="Who asked for it (the person or role responsible).")],
    ids: Annotated[Optional[str], typer.Option("--ids", help="IDs separated by commas: sample IDs, subject IDs, or class names/indices.")] = None,
    from_file: Annotated[Optional[Path], typer.Option("--from-file", help="Text file with the IDs (commas, spaces or one per line; # comments).", exists=True, dir_okay=False)] = None,
    goal: Annotated[str, typer.Option("--goal", "-g", help="forget | misclassify | relabel")] = "forget",
    new_labels: Annotated[Optional[str], typer.Option("--new-labels", help="relabel: new class per ID, comma-separated, same order as the IDs.")] = None,
    request_id: Annotated[Optional[str], typer.Option("--request-id", help="Your own ID (1-64 of A-Z a-z 0-9 . _ -). Default: a new UUID.")] = None,
    urgent: Annotated[bool, typer.Option("--urgent", help="Process now: a running `forgetflow serve` starts a batch for it instead of waiting for the scheduled one.")] = False,
    workspace: WorkspaceOption = None,
) -> None:
    """Record a deletion request in the ledger (idempotent: resubmitting the same request writes nothing)."""
    from forgetflow.requests.intake import submit
    from forgetflow.requests.schema import RequestError

    if (ids is None) == (from_file is None):
        raise RequestError("give the IDs either inline (--ids) or in a file (--from-file), not both or neither", "e.g. --ids 12,40,77")
    tokens = _split_ids(ids if ids is not None else from_file.read_text())
    payload = {"kind": kind, "goal": goal, "ids": _typed(tokens, kind), "reason": reason, "requested_by": requested_by}
    if new_labels is not None:
        payload["new_labels"] = _typed(_split_ids(new_labels), "classes")
    if request_id is not None:
        payload["request_id"] = request_id
    if urgent:
        payload["urgent"] = True
    result = submit(settings_for(workspace), payload, source="cli", announce="wait")
    style = {"recorded": "green", "already_recorded": "yellow", "duplicate": "yellow"}[result.outcome]
    console.print(f"[{style}]{result.message}[/]" + (" (urgent)" if result.urgent else ""))
    if result.announcement is not None:
        console.print(f"  {result.announcement.message}")
    if result.outcome == "duplicate":
        console.print(f"  follow request [bold]{result.duplicate_of}[/] instead: `forgetflow request show {result.duplicate_of}`")


@request_app.command("list")
def list_command(
    state: Annotated[Optional[str], typer.Option("--state", help="Only requests in this state (e.g. received, validated, rejected).")] = None,
    workspace: WorkspaceOption = None,
) -> None:
    """All requests with their current state."""
    from rich.table import Table

    from forgetflow.requests.intake import open_ledger

    statuses = [s for s in open_ledger(settings_for(workspace)).statuses().values() if state is None or s.state == state]
    if not statuses:
        console.print("no requests" + (f" in state {state}" if state else ""))
        return
    table = Table(title=f"deletion requests ({len(statuses)})")
    table.add_column("request", no_wrap=True)
    for column in ("kind", "goal", "targets", "state", "updated", "by"):
        table.add_column(column)
    for s in statuses:
        received = s.received or {}
        table.add_row(s.request_id, received.get("kind", "?"), received.get("goal", "?"), str(received.get("n_targets", "?")), _state(s.state), s.updated_at[:19].replace("T", " "), received.get("requested_by", ""))
    console.print(table)


@request_app.command("show")
def show_command(request_id: Annotated[str, typer.Argument(help="The request ID.")], workspace: WorkspaceOption = None) -> None:
    """A request's details, current state and full history."""
    from rich.table import Table

    from forgetflow.requests.intake import open_ledger
    from forgetflow.requests.schema import RequestError

    status = open_ledger(settings_for(workspace)).status(request_id)
    if status is None:
        raise RequestError(f"no request {request_id} in the ledger", "list requests with `forgetflow request list`")
    received = status.received or {}
    console.print(f"[bold]request {request_id}[/]  state: {_state(status.state)}")
    for key in ("kind", "goal", "n_targets", "reason", "requested_by", "received_at", "source", "fingerprint"):
        if key in received:
            console.print(f"  {key}: {received[key]}")
    table = Table(title="history")
    for column in ("seq", "at", "event", "details"):
        table.add_column(column)
    for entry in status.history:
        table.add_row(str(entry["seq"]), entry["at"][:19].replace("T", " "), _state(entry["event"]), _details(entry))
    console.print(table)


@request_app.command("inbox")
def inbox_command(workspace: WorkspaceOption = None) -> None:
    """Process the inbox folder once: record each JSON file, or move it to rejected/ with a reason."""
    from forgetflow.requests.intake import inbox_dir, process_inbox

    settings = settings_for(workspace)
    report = process_inbox(settings)
    if not report.processed and not report.rejected:
        console.print(f"inbox {inbox_dir(settings)} is empty")
    for name, result in report.processed:
        console.print(f"[green]processed[/] {name}: {result.message}")
    for name, reason in report.rejected:
        console.print(f"[red]rejected[/] {name}: {reason}")
    if report.announcement is not None:
        console.print(report.announcement.message)


@request_app.command("validate")
def validate_command(
    request_ids: Annotated[list[str], typer.Argument(help="One or more request IDs.")],
    dataset: Annotated[Optional[str], typer.Option("--dataset", "-d", help="Dataset name under data/ (default: the only one).")] = None,
    workspace: WorkspaceOption = None,
) -> None:
    """Resolve requests against the current dataset version and run the Great Expectations suites."""
    from forgetflow.validation.validate import validate_requests

    outcomes = validate_requests(settings_for(workspace), request_ids, dataset=dataset)
    for outcome in outcomes:
        if outcome.error:
            console.print(f"[red]error[/] {outcome.request_id}: {outcome.error}")
        elif outcome.success:
            fs = outcome.forget_set.summary()
            console.print(f"[green]validated[/] {outcome.request_id}: {fs['n_samples']} samples {fs['splits']}, {outcome.summary['evaluated']} expectations passed; report {outcome.report_path}")
        else:
            failed = ", ".join(outcome.failed_rules)
            console.print(f"[red]rejected[/] {outcome.request_id}: failed {failed}; report {outcome.report_path}")
    if any(not o.success for o in outcomes):
        raise typer.Exit(1)


@ledger_app.command("verify")
def verify_command(
    repair_head: Annotated[bool, typer.Option("--repair-head", help="Rewrite a missing or stale head file, only if the whole chain verifies.")] = False,
    workspace: WorkspaceOption = None,
) -> None:
    """Check the hash chain: any edit, deletion or reordering is found and the first bad entry named."""
    from forgetflow.requests.intake import open_ledger

    ledger = open_ledger(settings_for(workspace))
    result = ledger.repair_head() if repair_head else ledger.verify()
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    if result.ok:
        console.print(f"[green]ledger intact[/]: {result.n_entries} entries, head {result.head_hash or '-'}")
        return
    console.print(f"[bold red]ledger broken[/] at entry {result.first_bad}: {result.problem}")
    raise typer.Exit(1)


def _state(state: str) -> str:
    style = _STATE_STYLE.get(state)
    return f"[{style}]{state}[/]" if style else state


def _details(entry: dict) -> str:
    """A one-line summary of an entry: counts and reasons, never IDs."""
    parts = []
    if entry.get("reason") and entry["event"] != "received":
        parts.append(str(entry["reason"]))
    if "forget_set" in entry:
        parts.append(f"{entry['forget_set'].get('n_samples')} samples, hash {str(entry['forget_set'].get('content_hash'))[:12]}")
    if "validation" in entry:
        v = entry["validation"]
        parts.append(f"{v.get('evaluated', 0) - v.get('failed', 0)}/{v.get('evaluated', 0)} expectations passed")
    if entry.get("report"):
        parts.append(f"report {entry['report']}")
    for key in ("batch_id", "source", "data_version"):
        if entry.get(key):
            parts.append(f"{key} {entry[key]}")
    return "; ".join(parts)
