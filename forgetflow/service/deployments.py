"""The deployments of a workspace.

- `batch-<ws>`: the deletion flow on the `service:` schedule of params.yaml (nightly by default).
- `urgent-<ws>`: the deletion flow, triggered by a `forgetflow.request.received` event whose
  resource is labelled urgent and belongs to this workspace.
- `reference-<ws>` (work pools only): the reference retrain, on its own (GPU) pool.
- `calibrate-<ws>` (served, when `service.calibration_cron` is set): `forgetflow calibrate` on
  its own schedule, so the method ladders follow the champion.

`served_deployments` builds them for `forgetflow serve` (runs are subprocesses of the serving
process); `deploy_to_pools` registers them with work pools for `prefect worker start` processes.
Each deletion deployment has its own limit of one run at a time, with later runs enqueued; the flow's
workspace slot (service/limits.py) serialises the two deployments against each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from forgetflow.settings import Settings

DELETION_FLOW = "forgetflow-process-deletions"
REFERENCE_FLOW = "forgetflow-reference-retrain"
PROJECT_ROOT = Path(__file__).resolve().parents[2]  # holds flows/ (the code a worker loads)
INTERVAL_ANCHOR = datetime(2026, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class DeploymentNames:
    batch: str
    urgent: str
    reference: str

    def full(self, which: str) -> str:
        """`flow/deployment`, the form `prefect deployment run` and run_deployment take."""
        return f"{REFERENCE_FLOW if which == 'reference' else DELETION_FLOW}/{getattr(self, which)}"


def workspace_tag(settings: Settings) -> str:
    """`<folder name>-<6 hex of the path hash>`: readable, and unique per workspace path."""
    from forgetflow.service.naming import slug, workspace_id

    return f"{slug(settings.workspace.name) or 'workspace'}-{workspace_id(settings)[:6]}"


def deployment_names(settings: Settings, pool: str | None = None) -> DeploymentNames:
    """Served deployments: `batch-<workspace>-<id>`; on a work pool: `...-on-<pool>`, so serving
    and pool deployments of one workspace never overwrite each other."""
    from forgetflow.service.naming import slug

    suffix = workspace_tag(settings)
    if pool:
        suffix += f"-on-{slug(pool)}"
    return DeploymentNames(batch=f"batch-{suffix}", urgent=f"urgent-{suffix}", reference=f"reference-{suffix}")


def batch_schedule(settings: Settings):
    from prefect.schedules import Cron, Interval

    from forgetflow.params import load_params
    from forgetflow.service.config import service_params

    service = service_params(load_params(settings.params_path))
    if service.batch_interval_s:
        # A fixed anchor: a restart re-deploys without shifting the next run times.
        return Interval(timedelta(seconds=service.batch_interval_s), anchor_date=INTERVAL_ANCHOR, timezone=service.timezone)
    return Cron(service.batch_cron, timezone=service.timezone)


def urgent_trigger(settings: Settings):
    from prefect.events import DeploymentEventTrigger

    from forgetflow.service.events import REQUEST_RECEIVED, RESOURCE_PREFIX, URGENT_LABEL, WORKSPACE_LABEL
    from forgetflow.service.naming import workspace_id

    return DeploymentEventTrigger(
        name="urgent deletion request",
        expect={REQUEST_RECEIVED},
        match={"prefect.resource.id": f"{RESOURCE_PREFIX}*", URGENT_LABEL: "true", WORKSPACE_LABEL: workspace_id(settings)},
        parameters={"workspace": str(settings.workspace), "progress": False, "trigger": "{{ event.payload.request_id }}"},
    )


def _one_at_a_time():
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

    return ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE)


def _version() -> str:
    from importlib.metadata import version

    return version("forgetflow")


def served_deployments(settings: Settings) -> list:
    """The batch and urgent deployments for `prefect.serve`."""
    from flows.deletion import process_deletions

    names = deployment_names(settings)
    parameters = {"workspace": str(settings.workspace), "progress": False}
    common = {"parameters": parameters, "concurrency_limit": _one_at_a_time(), "tags": ["forgetflow"], "version": _version()}
    batch = process_deletions.to_deployment(name=names.batch, schedules=[batch_schedule(settings)], description=f"Scheduled deletion batch of {settings.workspace}", **common)
    urgent = process_deletions.to_deployment(name=names.urgent, triggers=[urgent_trigger(settings)], description=f"Urgent deletion requests of {settings.workspace}", **common)
    return [batch, urgent, *calibration_deployments(settings, common), verification_deployment(settings, common)]


def verification_deployment(settings: Settings, common: dict):
    """`verify-<ws>`: the second clock on its own schedule. Under reference policy `schedule` it
    runs on that schedule; otherwise hourly, and verifies only when a quarantine deadline is near
    (`if_due`): the batches themselves verify when their policy trains a reference."""
    from prefect.schedules import Cron

    from flows.verify import verify_pending
    from forgetflow.evaluation.config import evaluation_params
    from forgetflow.evaluation.reference import verification_cron
    from forgetflow.params import load_params
    from forgetflow.service.config import service_params

    params = load_params(settings.params_path)
    service = service_params(params)
    cron = verification_cron(evaluation_params(params).reference)
    parameters = {**common["parameters"], "if_due": True}
    return verify_pending.to_deployment(name=f"verify-{workspace_tag(settings)}", schedules=[Cron(cron, timezone=service.timezone)], description=f"Reference verification of {settings.workspace}", **{**common, "parameters": parameters})


def calibration_deployments(settings: Settings, common: dict) -> list:
    """`calibrate-<ws>` on `service.calibration_cron`, or nothing when it is not set."""
    from prefect.schedules import Cron

    from flows.calibrate import calibrate
    from forgetflow.params import load_params
    from forgetflow.service.config import service_params

    service = service_params(load_params(settings.params_path))
    if not service.calibration_cron:
        return []
    return [calibrate.to_deployment(name=f"calibrate-{workspace_tag(settings)}", schedules=[Cron(service.calibration_cron, timezone=service.timezone)], description=f"Method-ladder calibration of {settings.workspace}", **common)]


def ensure_work_pool(name: str, *, concurrency_limit: int | None = None) -> None:
    """A `process` work pool with the given concurrency limit (created or updated)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            pool = client.read_work_pool(name)
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=name, type="process", concurrency_limit=concurrency_limit))
            return
        if pool.type != "process":
            from forgetflow.errors import ConfigError

            raise ConfigError(f"work pool {name} is of type {pool.type}, not process", "pick another pool name, or deploy with `prefect deploy` for that worker type")
        if pool.concurrency_limit != concurrency_limit:
            client.update_work_pool(name, WorkPoolUpdate(concurrency_limit=concurrency_limit))


def deploy_to_pools(settings: Settings, pool: str, *, gpu_pool: str | None = None, source: Path = PROJECT_ROOT) -> dict[str, str]:
    """Register the batch and urgent deployments on `pool` (and the reference retrain on
    `gpu_pool`, a pool with concurrency limit 1). Workers load the flows from `source`."""
    from flows.deletion import process_deletions
    from flows.reference import retrain_reference

    names = deployment_names(settings, pool)
    ensure_work_pool(pool)
    env = {"FORGETFLOW_WORKSPACE": str(settings.workspace)}
    deployed = {}
    if gpu_pool:
        ensure_work_pool(gpu_pool, concurrency_limit=1)
        reference_name = deployment_names(settings, gpu_pool).full("reference")
        retrain_reference.from_source(source=str(source), entrypoint="flows/reference.py:retrain_reference").deploy(
            name=reference_name.split("/", 1)[1], work_pool_name=gpu_pool, job_variables={"env": env}, tags=["forgetflow", "gpu"],
            version=_version(), build=False, push=False, print_next_steps=False, ignore_warnings=True,
        )
        deployed["reference"] = reference_name
        env = {**env, "FORGETFLOW_REFERENCE_DEPLOYMENT": reference_name}
    flow_from_source = process_deletions.from_source(source=str(source), entrypoint="flows/deletion.py:process_deletions")
    parameters = {"workspace": str(settings.workspace), "progress": False}
    common = {"work_pool_name": pool, "job_variables": {"env": env}, "parameters": parameters, "concurrency_limit": _one_at_a_time(), "tags": ["forgetflow"], "version": _version(), "build": False, "push": False, "print_next_steps": False, "ignore_warnings": True}
    flow_from_source.deploy(name=names.batch, schedules=[batch_schedule(settings)], **common)
    flow_from_source.deploy(name=names.urgent, triggers=[urgent_trigger(settings)], **common)
    deployed.update(batch=names.full("batch"), urgent=names.full("urgent"))
    return deployed
