"""process_deletions: lock -> validate -> version data -> unlearn -> reference -> evaluate and
gate -> register -> promote -> erase -> summary. An unfinished batch (a crash, a killed worker) is
resumed first; then the pending requests form a new batch."""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from forgetflow.deletion.lock import workspace_lock
from forgetflow.deletion.promotion import summary_markdown
from forgetflow.settings import load_settings
from tasks.deletion import (
    close_batch,
    erase_batch,
    evaluate_batch,
    open_batch,
    promote_batch,
    reference_batch,
    register_batch,
    unlearn_batch,
    validate_batch,
    version_batch,
)


@flow(name="forgetflow-process-deletions", log_prints=True)
def process_deletions(workspace: str, request_ids: list[str] | None = None, method: str | None = None, wait_s: float = 0.0, progress: bool = True) -> list[dict]:
    """Process every pending request (or the given request IDs) as one batch."""
    settings = load_settings(workspace)
    summaries = []
    with workspace_lock(settings, purpose=f"process_deletions (flow run {flow_run.id})", wait_s=wait_s):
        for _ in range(2):  # an unfinished batch first, then one new batch
            batch_id = open_batch(workspace, request_ids)
            if batch_id is None:
                break
            counts = validate_batch(workspace, batch_id)
            if counts["valid"]:
                version_batch(workspace, batch_id)
                # Sequential on purpose: on one device the two would share it, and a CPU run stays
                # deterministic; a GPU deployment can send the reference to its own work pool.
                unlearn_batch(workspace, batch_id, method, progress)
                reference_batch(workspace, batch_id, progress)
                evaluate_batch(workspace, batch_id)
                register_batch(workspace, batch_id)
                promote_batch(workspace, batch_id)
                erase_batch(workspace, batch_id)
            summary = close_batch(workspace, batch_id)
            create_markdown_artifact(key="deletion-batch", markdown=summary_markdown(summary), description=f"forgetflow {batch_id}")
            summaries.append(summary)
            if request_ids and set(request_ids) <= set(summary["requests"]):
                break
    return summaries
