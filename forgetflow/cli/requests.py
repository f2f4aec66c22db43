"""`forgetflow request ...` (submit, list, show, inbox, validate) and `forgetflow ledger verify`.

Only typer and rich at import time; the ledger, pydantic models and Great Expectations load inside
the commands.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Optional

import typer

from forgetflow.cli.common import WorkspaceOption, console, settings_for, text

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


# An all-digit token longer than this is no sample ID or class index (both are below 2**63, 19
# digits); say so without parsing it (Python refuses int() of over 4300 digits) or echoing it whole.
MAX_ID_DIGITS = 19


def _typed(tokens: list[str], kind: str) -> list:
    if kind == "subjects":
        return tokens
    from forgetflow.requests.schema import RequestError

    # Sample IDs are integers; classes may be names or indices (an all-digit token is an index).
    typed = []
    for token in tokens:
        if not re.fullmatch(r"\d+", token):
            typed.append(token)
            continue
        if len(token) > MAX_ID_DIGITS:
            raise RequestError(f"ID {token[:12]}... has {len(token)} digits: sample IDs and class indices are below 2**63", "check the IDs you passed")
        typed.append(int(token))
    return typed


def _read_ids_file(path: Path) -> str:
    from forgetflow.requests.schema import RequestError

    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise RequestError(f"{path} is not UTF-8 text", "save the ID file as UTF-8 (plain text: IDs separated by commas, spaces or newlines)") from None
    except OSError as exc:
        raise RequestError(f"{path} cannot be read ({exc.strerror})", "pass a readable text file to --from-file") from None


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
    tokens = _split_ids(ids if ids is not None else _read_ids_file(from_file))
    payload = {"kind": kind, "goal": goal, "ids": _typed(tokens, kind), "reason": reason, "requested_by": requested_by}
    if new_labels is not None:
        payload["new_labels"] = _typed(_split_ids(new_labels), "classes")
    if request_id is not None:
        payload["request_id"] = request_id
    if urgent:
        payload["urgent"] = True
    result = submit(settings_for(workspace, existing=True), payload, source="cli", announce="wait")
    style = {"recorded": "green", "already_recorded": "yellow", "duplicate": "yellow"}[result.outcome]
    console.print(f"[{style}]{text(result.message)}[/]" + (" (urgent)" if result.urgent else ""))
    if result.announcement is not None:
        console.print(f"  {text(result.announcement.message)}")
    if result.outcome == "duplicate":
        console.print(f"  follow request [bold]{text(result.duplicate_of)}[/] instead: `forgetflow request show {text(result.duplicate_of)}`")


@request_app.command("list")
def list_command(
    state: Annotated[Optional[str], typer.Option("--state", help="Only requests in this state (e.g. received, validated, rejected).")] = None,
    workspace: WorkspaceOption = None,
) -> None:
    """All requests with their current state."""
    from rich.table import Table

    from forgetflow.requests.intake import open_ledger

    statuses = [s for s in open_ledger(settings_for(workspace, existing=True)).statuses().values() if state is None or s.state == state]
    if not statuses:
        console.print("no requests" + (f" in state {text(state)}" if state else ""))
        return
    table = Table(title=f"deletion requests ({len(statuses)})")
    table.add_column("request", no_wrap=True)
    for column in ("kind", "goal", "targets", "state", "updated", "by"):
        table.add_column(column)
    for s in statuses:
        received = s.received or {}
        table.add_row(text(s.request_id), text(received.get("kind", "?")), text(received.get("goal", "?")), text(received.get("n_targets", "?")), _state(s.state), text(str(s.updated_at)[:19].replace("T", " ")), text(received.get("requested_by", "")))
    console.print(table)


@request_app.command("show")
def show_command(request_id: Annotated[str, typer.Argument(help="The request ID.")], workspace: WorkspaceOption = None) -> None:
    """A request's details, current state and full history."""
    from rich.table import Table

    from forgetflow.requests.intake import open_ledger
    from forgetflow.requests.schema import RequestError

    status = open_ledger(settings_for(workspace, existing=True)).status(request_id)
    if status is None:
        raise RequestError(f"no request {request_id} in the ledger", "list requests with `forgetflow request list`")
    received = status.received or {}
    console.print(f"[bold]request {text(request_id)}[/]  state: {_state(status.state)}")
    for key in ("kind", "goal", "n_targets", "reason", "requested_by", "received_at", "source", "fingerprint"):
        if key in received:
            console.print(f"  {key}: {text(received[key])}")
    table = Table(title="history")
    for column in ("seq", "at", "event", "details"):
        table.add_column(column)
    for entry in status.history:
        table.add_row(text(entry["seq"]), text(str(entry["at"])[:19].replace("T", " ")), _state(entry["event"]), text(_details(entry)))
    console.print(table)


@request_app.command("inbox")
def inbox_command(workspace: WorkspaceOption = None) -> None:
    """Process the inbox folder once: record each JSON file, or move it to rejected/ with a reason."""
    from forgetflow.requests.intake import inbox_dir, process_inbox

    settings = settings_for(workspace, existing=True)
    report = process_inbox(settings)
    if not report.processed and not report.rejected:
        console.print(f"inbox {text(inbox_dir(settings))} is empty")
    for name, result in report.processed:
        console.print(f"[green]processed[/] {text(name)}: {text(result.message)}")
    for name, reason in report.rejected:
        console.print(f"[red]rejected[/] {text(name)}: {text(reason)}")
    if report.announcement is not None:
        console.print(text(report.announcement.message))


@request_app.command("validate")
def validate_command(
    request_ids: Annotated[list[str], typer.Argument(help="One or more request IDs.")],
    dataset: Annotated[Optional[str], typer.Option("--dataset", "-d", help="Dataset name under data/ (default: the only one).")] = None,
    workspace: WorkspaceOption = None,
) -> None:
    """Resolve requests against the current dataset version and run the Great Expectations suites."""
    from forgetflow.validation.validate import validate_requests

    outcomes = validate_requests(settings_for(workspace, existing=True), request_ids, dataset=dataset)
    for outcome in outcomes:
        if outcome.error:
            console.print(f"[red]error[/] {text(outcome.request_id)}: {text(outcome.error)}")
        elif outcome.success:
            fs = outcome.forget_set.summary()
            console.print(f"[green]validated[/] {text(outcome.request_id)}: {text(fs['n_samples'])} samples {text(fs['splits'])}, {text(outcome.summary['evaluated'])} expectations passed; report {text(outcome.report_path)}")
        else:
            failed = ", ".join(map(str, outcome.failed_rules))
            console.print(f"[red]rejected[/] {text(outcome.request_id)}: failed {text(failed)}; report {text(outcome.report_path)}")
    if any(not o.success for o in outcomes):
        raise typer.Exit(1)


@ledger_app.command("verify")
def verify_command(
    repair_head: Annotated[bool, typer.Option("--repair-head", help="Rewrite a missing or stale head file, only if the whole chain verifies.")] = False,
    workspace: WorkspaceOption = None,
) -> None:
    """Check the hash chain: any edit, deletion or reordering is found and the first bad entry named."""
    from forgetflow.requests.intake import open_ledger

    settings = settings_for(workspace, existing=True)
    ledger = open_ledger(settings)
    result = ledger.repair_head() if repair_head else ledger.verify()
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {text(warning)}")
    if not result.ok:
        console.print(f"[bold red]ledger broken[/] at entry {result.first_bad}: {text(result.problem)}")
        raise typer.Exit(1)
    # A consistent rewrite (re-hashed tail and head) passes the file check: the anchors outside
    # the file (MLflow tags, Git tags) catch it.
    from forgetflow.anchors import check_anchors

    anchors = check_anchors(settings, ledger)
    for note in anchors.notes:
        console.print(f"[yellow]warning:[/] {text(note)}")
    if not anchors.ok:
        console.print(f"[bold red]ledger rewritten[/]: {text(anchors.problem)}", soft_wrap=True)
        raise typer.Exit(1)
    console.print(f"[green]ledger intact[/]: {result.n_entries} entries, head {text(result.head_hash or '-')}; {anchors.checked} anchors agree")


def _state(state: str) -> str:
    style = _STATE_STYLE.get(state)
    return f"[{style}]{text(state)}[/]" if style else text(state)


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
