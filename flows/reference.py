"""retrain_reference: the reference retrain of one deletion batch as a flow of its own, so a
deployment can send it to another work pool (GPUs, several with torchrun) while the deletion flow
waits for it (FORGETFLOW_REFERENCE_DEPLOYMENT). The worker must see the same workspace."""

from __future__ import annotations

from prefect import flow

from forgetflow.deletion import pipeline
from forgetflow.deletion.batch import BatchState
from forgetflow.service.limits import device_slot, ensure_limits
from forgetflow.settings import load_settings


@flow(name="forgetflow-reference-retrain", flow_run_name="reference-{batch_id}", log_prints=True)
def retrain_reference(workspace: str, batch_id: str, progress: bool = False) -> dict:
    settings = load_settings(workspace)
    ensure_limits(settings)
    state = BatchState.load(settings, batch_id)
    with device_slot(settings):
        outputs = pipeline.reference(settings, state, progress=progress)
    return {k: v for k, v in outputs.items() if k != "checkpoint"}
