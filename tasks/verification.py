"""The verification run as one Prefect task: its steps are resumable inside
`forgetflow.deletion.verification` (a state file of its own), so a retried task does no work twice."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from forgetflow.settings import load_settings


@task(name="verify-pending-batches", cache_policy=NO_CACHE)
def verify_workspace(workspace: str, if_due: bool = False, progress: bool = False, wait_s: float = 0.0) -> dict:
    from forgetflow.deletion.verification import run_verification

    return run_verification(load_settings(workspace), if_due=if_due, progress=progress, wait_s=wait_s)
