"""Training stage: the base model with the project's recipe."""

from __future__ import annotations

from dataclasses import asdict

from prefect import task
from prefect.cache_policies import NO_CACHE

from forgetflow.base_model import train_base_model
from forgetflow.params import load_params
from forgetflow.settings import load_settings


@task(name="train-base-model", cache_policy=NO_CACHE)
def train_base(workspace: str, dataset: str, data_md5: str, progress: bool = True) -> dict:
    settings = load_settings(workspace)
    params = load_params(settings.params_path)
    return asdict(train_base_model(settings, params, dataset, data_md5, progress=progress))
