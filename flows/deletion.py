"""process_deletions: lock -> validate -> version data -> reference (or the fast path) -> unlearn
(the method ladder, each rung gated against that one reference, or by the reference-free checks)
-> [fast path failed: reference now] -> evaluate and gate -> register -> promote (provisionally on
the fast path) -> verify the batches in quarantine (with a reference) -> erase (or quarantine) ->
summary. An unfinished batch (a crash, a killed worker) is resumed first, at the step (and the
ladder's rung) it was on; then the pending requests form a new batch."""

from __future__ import annotations

from contextlib import nullcontext

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from forgetflow.deletion.lock import workspace_lock
from forgetflow.deletion.promotion import summary_markdown
from forgetflow.service.limits import device_slot, ensure_limits, workspace_slot
from forgetflow.settings import load_settings
from tasks.deletion import (
    close_batch,
    erase_batch,
    escalate_batch,
    evaluate_batch,
    open_batch,
    promote_batch,
    reference_batch,
    register_batch,
    unlearn_batch,
    validate_batch,
    verify_pending_batch,
    version_batch,
)


def _run_name() -> str:
    from datetime import datetime, timezone

    trigger = flow_run.parameters.get("trigger")
    return f"urgent-{trigger}" if trigger else f"batch-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"


@flow(name="forgetflow-process-deletions", flow_run_name=_run_name, log_prints=True)
def process_deletions(
    workspace: str,
    request_ids: list[str] | None = None,
    method: str | None = None,
    wait_s: float | None = None,
    progress: bool = True,
    trigger: str | None = None,
) -> list[dict]:
    """Process every pending request (or the given request IDs) as one batch.

    `wait_s`: how long to wait while another run holds the workspace; None (served runs) queues
    for it, a number (`forgetflow process --wait`) gives up after that long with WorkspaceBusyError.
    `trigger` names the urgent request whose event started this run (for the run name); the run
    still takes every pending request, so requests that arrived meanwhile are not left waiting.
    """
    settings = load_settings(workspace)
    summaries = []
    ensure_limits(settings)
    purpose = f"process_deletions (flow run {flow_run.id})"
    # The Prefect slot queues a second run (a trigger during a batch) across processes and
    # machines; the file lock also guards against forgetflow processes outside Prefect.
    with workspace_slot(settings, wait_s=wait_s, purpose=purpose), workspace_lock(settings, purpose=purpose, wait_s=wait_s or 0.0):
        for _ in range(2):  # an unfinished batch first, then one new batch
            batch_id = open_batch(workspace, request_ids)
            if batch_id is None:
                break
            counts = validate_batch(workspace, batch_id)
            if counts["valid"]:
                version_batch(workspace, batch_id)
                # Sequential on purpose: on one device the two would share it, and a CPU run stays
                # deterministic; a GPU deployment can send the reference to its own work pool.
                # A local reference runs under the unlearning's device slot (one acquisition, not
                # two); a delegated one must not wait while this flow holds the slot.
                with nullcontext() if settings.reference_deployment else device_slot(settings):
                    # The reference comes first: every rung of the method ladder is gated against it.
                    reference_batch(workspace, batch_id, progress)
                    unlearn_batch(workspace, batch_id, method, progress)
                    escalate_batch(workspace, batch_id, progress)  # fast path failed: the reference now
                evaluate_batch(workspace, batch_id)
                register_batch(workspace, batch_id)
                promote_batch(workspace, batch_id)
                verify_pending_batch(workspace, batch_id)  # with a reference: the batches in quarantine
                erase_batch(workspace, batch_id)  # provisional (fast path): quarantined instead
            summary = close_batch(workspace, batch_id)
            create_markdown_artifact(key="deletion-batch", markdown=summary_markdown(summary), description=f"forgetflow {batch_id}")
            summaries.append(summary)
            if request_ids and set(request_ids) <= set(summary["requests"]):
                break
    return summaries
