"""Preflight: everything that can fail cheaply fails before any data or model is written."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from forgetflow.settings import load_settings
from forgetflow.tracking import check_tracking_uri
from forgetflow.workspace import init_workspace


@task(name="prepare-workspace", cache_policy=NO_CACHE)
def prepare_workspace(workspace: str) -> dict:
    settings = load_settings(workspace)
    params = init_workspace(settings)
    check_tracking_uri(settings)
    return {"workspace": str(settings.workspace), "params_hash": params.hash(), "device": settings.resolved_device()}
