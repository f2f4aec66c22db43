"""`forgetflow serve`, `forgetflow status`, `forgetflow deploy`: forgetflow as a service."""

from __future__ import annotations

import json
import os
from typing import Annotated, Optional

import typer

from forgetflow.cli.common import WorkspaceOption, console, settings_for, text


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("status")(status)
    app.command("deploy")(deploy)


def serve(
    host: Annotated[str, typer.Option(help="Where to start the Prefect server when PREFECT_API_URL is unset.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the Prefect server it starts (UI and API).")] = 4200,
    watch_inbox: Annotated[bool, typer.Option("--watch-inbox/--no-watch-inbox", help="Sweep data/requests/inbox/ every service.inbox_poll_s seconds.")] = True,
    workspace: WorkspaceOption = None,
) -> None:
    """Serve the deletion flow: a scheduled batch (params.yaml `service:`), an urgent-request trigger and the inbox watcher.

    Uses the Prefect server at PREFECT_API_URL, or starts `prefect server start` (SQLite under the
    workspace) and stops it on exit. Schedules stay active after Ctrl-C.
    """
    from forgetflow.service.serve import ServeOptions
    from forgetflow.service.serve import serve as run_service

    run_service(settings_for(workspace, existing=True), ServeOptions(host=host, port=port, watch_inbox=watch_inbox, on_event=lambda message: console.print(text(message))))


def status(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    workspace: WorkspaceOption = None,
) -> None:
    """The server, the deployments with their next runs, concurrency limits and pending requests."""
    from forgetflow.service.status import service_status

    report = service_status(settings_for(workspace, existing=True))
    if as_json:
        console.print_json(json.dumps(report.as_dict(), default=str))
        return
    _print_status(report)


def deploy(
    pool: Annotated[str, typer.Option("--pool", help="Process work pool for the deletion deployments (created if missing).")],
    gpu_pool: Annotated[Optional[str], typer.Option("--gpu-pool", help="Work pool for the reference retrain, created with concurrency limit 1.")] = None,
    workspace: WorkspaceOption = None,
) -> None:
    """Register the batch and urgent deployments on a work pool, for `prefect worker start --pool NAME`.

    Needs PREFECT_API_URL (a running server). Workers must see the same workspace path (a shared
    filesystem) and this checkout of the flows.
    """
    from forgetflow.errors import ConfigError

    settings = settings_for(workspace, existing=True)
    if not os.environ.get("PREFECT_API_URL"):
        from forgetflow.service.server import known_api_url

        api_url = known_api_url(settings)
        if api_url is None:
            raise ConfigError("no Prefect server to deploy to: PREFECT_API_URL is unset and no `forgetflow serve` runs for this workspace", "export PREFECT_API_URL=http://<host>:4200/api (see docs/scale-out.md)")
        os.environ["PREFECT_API_URL"] = api_url
    from forgetflow.service.deployments import deploy_to_pools
    from forgetflow.service.limits import ensure_limits

    ensure_limits(settings)
    deployed = deploy_to_pools(settings, pool, gpu_pool=gpu_pool)
    for which, name in deployed.items():
        console.print(f"[green]deployed[/] {text(name)} ({which}) on pool {text(gpu_pool if which == 'reference' else pool)}")
    console.print(f"start a worker: [bold]prefect worker start --pool {text(pool)} --type process[/]" + (f"  and  [bold]prefect worker start --pool {text(gpu_pool)} --type process[/] on the GPU machine" if gpu_pool else ""))


def _print_status(report) -> None:
    from rich.table import Table

    if report.api_url is None:
        console.print("server: [yellow]none[/] (PREFECT_API_URL unset and no `forgetflow serve` running for this workspace)")
    else:
        health = "[green]healthy[/]" if report.server_healthy else "[red]not answering[/]"
        console.print(f"server: {text(report.api_url)} {health}" + (f"; served by pid {report.serve_pid}" if report.serving else "; [yellow]no `forgetflow serve` process for this workspace[/]"))
    if report.deployments:
        table = Table(title="deployments (flow forgetflow-process-deletions / forgetflow-reference-retrain)")
        for column in ("deployment", "pool", "schedule / trigger", "paused", "next runs", "last runs"):
            table.add_column(column)
        for d in report.deployments:
            if not d.exists:
                table.add_row(text(d.name), "", "[yellow]not deployed[/]", "", "", "")
                continue
            what = ", ".join(d.schedules) or (f"{d.triggers} trigger(s)" if d.triggers else "on demand")
            last = ", ".join(f"{r['name']} {r['state']}" for r in d.recent_runs)
            table.add_row(text(d.name.split("/", 1)[1]), text(d.work_pool or "(served)"), text(what), "yes" if d.paused else "no", text("\n".join(t[:19].replace("T", " ") for t in d.next_runs)), text(last))
        console.print(table)
    for limit in report.limits:
        console.print(f"limit {text(limit['name'])}: {limit['active_slots']}/{limit['limit']} slots in use" if limit["limit"] is not None else f"limit {text(limit['name'])}: [yellow]missing[/] (created when the service or a flow starts)")
    for slot in report.slot_holders:
        state = {True: "running", False: "[yellow]dead: its slot is freed by the next run[/]", None: "on another host"}[slot["alive"]]
        console.print(f"slot {text(slot['limit'])}: held by {text(slot.get('purpose') or 'a forgetflow run')} (pid {text(slot['pid'])} on {text(slot['host'])} since {text(slot['since'])}), {state}")
    urgent = sum(1 for p in report.pending if p["urgent"])
    console.print(f"pending requests: {len(report.pending)}" + (f" ({urgent} urgent)" if urgent else ""))
    for p in report.pending[:20]:
        console.print(f"  {text(p['request_id'])}  {text(p['kind'])}  {text(p['state'])}" + ("  [bold]urgent[/]" if p["urgent"] else ""))
    if report.open_batches:
        console.print(f"unfinished batches (resumed by the next run): {text(', '.join(report.open_batches))}")
    if report.lock_holder:
        console.print(f"workspace lock: {text(report.lock_holder.get('purpose'))} (pid {text(report.lock_holder.get('pid'))} since {text(report.lock_holder.get('since'))})")
