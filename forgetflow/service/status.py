"""What `forgetflow status` reports: the server, the workspace's deployments with their next runs,
the concurrency limits, pending requests, unfinished batches and who holds the workspace lock."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from forgetflow.settings import Settings

NEXT_RUNS = 3


@dataclass
class DeploymentStatus:
    name: str
    exists: bool
    paused: bool | None = None
    schedules: list[str] = field(default_factory=list)
    triggers: int = 0
    work_pool: str | None = None
    next_runs: list[str] = field(default_factory=list)  # ISO times of scheduled runs
    recent_runs: list[dict] = field(default_factory=list)  # name, state, start


@dataclass
class ServiceStatus:
    workspace: str
    api_url: str | None
    server_healthy: bool
    serving: bool  # a `forgetflow serve` process of this workspace is alive
    serve_pid: int | None
    deployments: list[DeploymentStatus] = field(default_factory=list)
    limits: list[dict] = field(default_factory=list)
    pending: list[dict] = field(default_factory=list)  # request_id, state, kind, urgent, received_at
    open_batches: list[str] = field(default_factory=list)
    lock_holder: dict | None = None
    slot_holders: list[dict] = field(default_factory=list)  # recorded holders of concurrency slots (slots.py)

    def as_dict(self) -> dict:
        return asdict(self)


def _pending(settings: Settings) -> list[dict]:
    from forgetflow.deletion.pipeline import PENDING_STATES
    from forgetflow.requests.intake import open_ledger

    rows = []
    for status in open_ledger(settings).statuses().values():
        if status.state in PENDING_STATES:
            received = status.received or {}
            rows.append({"request_id": status.request_id, "state": status.state, "kind": received.get("kind"), "urgent": bool(received.get("urgent")), "received_at": received.get("received_at")})
    return rows


def _describe_schedule(schedule) -> str:
    inner = schedule.schedule
    text = getattr(inner, "cron", None) or (f"every {inner.interval.total_seconds():g} s" if getattr(inner, "interval", None) else str(inner))
    return text + ("" if schedule.active else " (inactive)")


def _deployments(settings: Settings) -> tuple[list[DeploymentStatus], list[dict]]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId, DeploymentFilterName, FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.exceptions import ObjectNotFound

    from forgetflow.service.deployments import deployment_names, workspace_tag
    from forgetflow.service.limits import device_limit_name, workspace_limit_name

    rows: list[DeploymentStatus] = []
    limits: list[dict] = []
    with get_client(sync_client=True) as client:
        # Served and pool deployments of this workspace all carry its tag in their names.
        found = client.read_deployments(deployment_filter=DeploymentFilter(name=DeploymentFilterName(like_=workspace_tag(settings))))
        flows = {f.id: f.name for f in client.read_flows()}
        served = deployment_names(settings)
        present = {f"{flows.get(d.flow_id, '?')}/{d.name}" for d in found}
        rows += [DeploymentStatus(served.full(w), exists=False) for w in ("batch", "urgent") if served.full(w) not in present]
        for deployment in sorted(found, key=lambda d: d.name):
            by_deployment = DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
            scheduled = client.read_flow_runs(
                deployment_filter=by_deployment,
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))),
                sort=FlowRunSort.EXPECTED_START_TIME_ASC,
                limit=NEXT_RUNS,
            )
            recent = client.read_flow_runs(deployment_filter=by_deployment, flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(not_any_=[StateType.SCHEDULED]))), sort=FlowRunSort.START_TIME_DESC, limit=NEXT_RUNS)
            rows.append(DeploymentStatus(
                name=f"{flows.get(deployment.flow_id, '?')}/{deployment.name}",
                exists=True,
                paused=deployment.paused,
                schedules=[_describe_schedule(s) for s in deployment.schedules],
                triggers=sum(1 for a in client.read_resource_related_automations(f"prefect.deployment.{deployment.id}") if a.enabled),
                work_pool=deployment.work_pool_name,
                next_runs=[run.expected_start_time.isoformat() for run in scheduled if run.expected_start_time],
                recent_runs=[{"name": run.name, "state": run.state.name if run.state else "?", "start": run.start_time.isoformat() if run.start_time else None} for run in recent],
            ))
        for name in (device_limit_name(settings), workspace_limit_name(settings)):
            try:
                limit = client.read_global_concurrency_limit_by_name(name)
                limits.append({"name": name, "limit": limit.limit, "active_slots": limit.active_slots, "active": limit.active})
            except ObjectNotFound:
                limits.append({"name": name, "limit": None, "active_slots": None, "active": False})
    return rows, limits


def service_status(settings: Settings) -> ServiceStatus:
    import os

    from forgetflow.deletion.batch import open_batches
    from forgetflow.deletion.lock import holder
    from forgetflow.service.server import healthy, known_api_url, pid_alive, read_service_file
    from forgetflow.service.slots import holders

    info = read_service_file(settings) or {}
    serving = pid_alive(info.get("serve_pid"))
    api_url = known_api_url(settings)
    status = ServiceStatus(
        workspace=str(settings.workspace),
        api_url=api_url,
        server_healthy=bool(api_url) and healthy(api_url),
        serving=serving,
        serve_pid=info.get("serve_pid") if serving else None,
        pending=_pending(settings),
        open_batches=[b.batch_id for b in open_batches(settings)],
        lock_holder=holder(settings),
        slot_holders=[{k: v for k, v in h.items() if k != "path"} for h in holders(settings)],
    )
    if status.server_healthy:
        os.environ["PREFECT_API_URL"] = api_url  # read the deployments from that server, not an ephemeral one
        status.deployments, status.limits = _deployments(settings)
    return status
