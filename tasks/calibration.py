"""Task of the calibration flow: one call into `forgetflow.calibration_run` under the device slot
(proxy retrains and method trials compete for the same device as deletion batches)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from forgetflow.service.limits import device_slot
from forgetflow.settings import load_settings


@task(name="calibrate-methods", cache_policy=NO_CACHE)
def calibrate_methods(workspace: str, kinds: list[str] | None = None, max_configs: int = 3, max_time_ratio: float = 0.25, seed: int = 0, progress: bool = True) -> dict:
    from forgetflow.calibration_run import calibrate_workspace

    settings = load_settings(workspace)
    with device_slot(settings):
        document = calibrate_workspace(settings, kinds=kinds, max_configs=max_configs, max_time_ratio=max_time_ratio, seed=seed, progress=progress)
    return {k: document[k] for k in ("calibration_id", "champion_version", "data_md5", "ladders", "notes", "seconds", "mlflow_run_id")}
