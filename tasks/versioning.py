"""Data versioning stage: import or verify the DVC-tracked dataset version."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from forgetflow.data.importer import ensure_dataset
from forgetflow.params import load_params
from forgetflow.settings import load_settings


# DVC fails instead of waiting when its repository lock is held, so DVC steps never run twice at once.
@task(name="version-dataset", cache_policy=NO_CACHE)
def version_dataset(workspace: str, source: str, source_path: str | None = None, download: bool = False, reimport: bool = False) -> dict:
    settings = load_settings(workspace)
    params = load_params(settings.params_path)
    return ensure_dataset(settings, params, source, source_path, download=download, reimport=reimport).as_dict()
