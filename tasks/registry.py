"""Registry stage: one MLflow run, the model logged with its checkpoint, a new registered version."""

from __future__ import annotations

from dataclasses import asdict

from prefect import task
from prefect.cache_policies import NO_CACHE

from forgetflow.base_model import TrainedModel, cleanup
from forgetflow.params import load_params
from forgetflow.registration import register_base_model
from forgetflow.settings import load_settings


@task(name="register-base-model", cache_policy=NO_CACHE)
def register_base(workspace: str, data: dict, trained: dict, source: str, run_name: str) -> dict:
    settings = load_settings(workspace)
    params = load_params(settings.params_path)
    model = TrainedModel(**trained)
    try:
        return asdict(register_base_model(settings, params, data, model, source=source, run_name=run_name))
    finally:
        cleanup(model)  # the scratch checkpoint now lives in MLflow (or the run failed)
