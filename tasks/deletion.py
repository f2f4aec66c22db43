"""Tasks of the deletion flow, one per pipeline stage. Each takes the workspace and the batch ID
(never sample IDs: those would land in Prefect's database) and calls one step in
`forgetflow.deletion`. Steps are resumable, so a retried or re-run task does no work twice.

No task carries Prefect tags: for every tagged task the task engine asks the server for a tag
concurrency limit before it starts, and on the SQLite server that write often collides with the
flow's own event and log writes ("database is locked", a 503 the client retries after 2 s). The
device limit (`device_slot`) already keeps one unlearning or retraining job per device."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from forgetflow.deletion import pipeline, promotion
from forgetflow.deletion.batch import BatchState
from forgetflow.service.limits import device_slot
from forgetflow.settings import load_settings


def _state(workspace: str, batch_id: str):
    settings = load_settings(workspace)
    return settings, BatchState.load(settings, batch_id)


@task(name="open-batch", cache_policy=NO_CACHE)
def open_batch(workspace: str, request_ids: list[str] | None = None) -> str | None:
    state = pipeline.start_batch(load_settings(workspace), request_ids)
    return state.batch_id if state else None


@task(name="validate-requests", cache_policy=NO_CACHE)
def validate_batch(workspace: str, batch_id: str) -> dict:
    outputs = pipeline.validate(*_state(workspace, batch_id))
    return {"valid": len(outputs["valid"]), "rejected": len(outputs["rejected"])}


@task(name="version-data", cache_policy=NO_CACHE)
def version_batch(workspace: str, batch_id: str) -> dict:
    outputs = pipeline.version_data(*_state(workspace, batch_id))
    return {k: outputs[k] for k in ("md5_before", "md5_after", "removed")}


@task(name="unlearn", cache_policy=NO_CACHE)
def unlearn_batch(workspace: str, batch_id: str, method: str | None = None, progress: bool = True) -> dict:
    settings, state = _state(workspace, batch_id)
    with device_slot(settings):
        outputs = pipeline.unlearn(settings, state, method_override=method, progress=progress)
    return {"parent_version": outputs["parent_version"], "seconds": outputs["seconds"], "methods": [r["method"] for r in outputs["runs"]]}


@task(name="retrain-reference", cache_policy=NO_CACHE)
def reference_batch(workspace: str, batch_id: str, progress: bool = True) -> dict:
    """Retrain the reference here, or on the deployment FORGETFLOW_REFERENCE_DEPLOYMENT names
    (its own work pool, e.g. GPUs with torchrun); either way the result lands in the batch state."""
    settings, state = _state(workspace, batch_id)
    if settings.reference_deployment and not state.done("reference"):
        run_reference_deployment(settings, batch_id, progress)
        state = BatchState.load(settings, batch_id)
        if not state.done("reference"):
            from forgetflow.errors import ForgetflowError

            raise ForgetflowError(f"deployment {settings.reference_deployment} finished without recording the reference of {batch_id}", "check that its worker sees the same workspace (a shared filesystem)")
    with device_slot(settings):
        outputs = pipeline.reference(settings, state, progress=progress)  # a recorded step returns at once
    return {k: v for k, v in outputs.items() if k != "checkpoint"}


def run_reference_deployment(settings, batch_id: str, progress: bool) -> None:
    from prefect.deployments import run_deployment

    from forgetflow.errors import ForgetflowError

    run = run_deployment(settings.reference_deployment, parameters={"workspace": str(settings.workspace), "batch_id": batch_id, "progress": progress}, timeout=None)
    if run.state is None or not run.state.is_completed():
        raise ForgetflowError(
            f"reference retrain run {run.name} on deployment {settings.reference_deployment} ended {run.state.name if run.state else 'without a state'}",
            "see the run's logs in the Prefect UI; re-running the deletion flow resumes the batch",
        )


@task(name="escalate-reference", cache_policy=NO_CACHE)
def escalate_batch(workspace: str, batch_id: str, progress: bool = True) -> dict:
    """Fast path failed every rung: train the reference now (nothing happens otherwise)."""
    settings, state = _state(workspace, batch_id)
    with device_slot(settings):
        outputs = pipeline.escalate_reference(settings, state, progress=progress)
    return {k: v for k, v in outputs.items() if k != "checkpoint"}


@task(name="verify-pending", cache_policy=NO_CACHE)
def verify_pending_batch(workspace: str, batch_id: str) -> dict:
    """A batch that trained a reference verifies the provisional champions waiting in quarantine."""
    from forgetflow.deletion.verification import verify_pending

    return verify_pending(*_state(workspace, batch_id))


@task(name="evaluate-and-gate", cache_policy=NO_CACHE)
def evaluate_batch(workspace: str, batch_id: str) -> dict:
    from pathlib import Path

    from prefect.artifacts import create_markdown_artifact

    outputs = pipeline.evaluate(*_state(workspace, batch_id))
    for index, group in enumerate(outputs["groups"]):
        create_markdown_artifact(key=f"evaluation-{index}-{group['category']}-{group['goal']}", markdown=Path(group["report"]).read_text(), description=f"{batch_id}: gate {'passed' if group['passed'] else 'rejected'}")
    return {"passed": outputs["passed"], "reasons": [g["reason"] for g in outputs["groups"]]}


@task(name="register", cache_policy=NO_CACHE)
def register_batch(workspace: str, batch_id: str) -> dict:
    return promotion.register(*_state(workspace, batch_id))


@task(name="promote", cache_policy=NO_CACHE)
def promote_batch(workspace: str, batch_id: str) -> dict:
    return promotion.promote(*_state(workspace, batch_id))


@task(name="erase", cache_policy=NO_CACHE)
def erase_batch(workspace: str, batch_id: str) -> dict:
    outputs = promotion.erase(*_state(workspace, batch_id))  # a provisional batch is quarantined instead
    return {"verified": outputs["verification"]["ok"], "superseded_versions": outputs["superseded_versions"], "quarantined_until": outputs.get("deadline")}


@task(name="close-batch", cache_policy=NO_CACHE)
def close_batch(workspace: str, batch_id: str) -> dict:
    return promotion.finish(*_state(workspace, batch_id))
