"""What goes into MLflow for a base model: params, metrics, dataset input and lineage tags."""

from __future__ import annotations

from pathlib import Path

from forgetflow.base_model import TrainedModel
from forgetflow.lineage import code_version, prefect_flow_run_id
from forgetflow.params import Params
from forgetflow.settings import Settings
from forgetflow.tracking import Registration, lineage_tags, log_and_register


def dvc_source_url(name: str, md5: str) -> str:
    """A pointer to an immutable DVC version: dataset directory name and its md5."""
    return f"dvc://{name}@{md5}"


def flat_params(params: Params, seed: int) -> dict:
    flat = {f"model.{k}": v for k, v in params.model.model_dump().items()}
    flat.update({f"train.{k}": v for k, v in params.train.model_dump().items()})
    flat["train.seed_used"] = seed
    return flat


def register_base_model(settings: Settings, params: Params, data: dict, trained: TrainedModel, *, source: str, run_name: str) -> Registration:
    """Log the run and register a new version as `champion` (version 1 on a fresh store)."""
    from forgetflow.models import load_checkpoint

    model, _ = load_checkpoint(Path(trained.checkpoint))
    tags = lineage_tags(
        {
            "stage": "bootstrap",
            "dataset": data["name"],
            "data_md5": data["md5"],
            "params_hash": params.hash(),
            "recipe_hash": params.recipe_hash(),
            "code_version": code_version(),
            "prefect_flow_run_id": prefect_flow_run_id(),
            "source": source,
            "seed": trained.seed,
            "arch": params.model.arch,
            "device": trained.device,
            "parent_version": "none",
        }
    )
    artifacts = {"reports": Path(trained.history_csv)}
    if trained.history_plot:
        artifacts["plots"] = Path(trained.history_plot)
    registration = log_and_register(
        settings,
        run_name=run_name,
        model=model,
        checkpoint_path=Path(trained.checkpoint),
        params=flat_params(params, trained.seed),
        metrics=trained.metrics,
        datasets=[{"name": data["name"], "md5": data["md5"], "source_url": dvc_source_url(data["name"], data["md5"]), "context": "training"}],
        tags=tags,
        artifacts=artifacts,
    )
    from forgetflow.descriptions import describe_registry

    describe_registry(settings)  # the version and the registered model say what they are in MLflow's UI
    return registration


def bootstrap_workspace(settings: Settings, source: str = "digits", *, progress: bool = False) -> Registration:
    """The bootstrap flow's steps without Prefect (scripts, benchmarks, subprocess tests):
    import the source, train the base model, register it as champion."""
    from forgetflow.base_model import cleanup, train_base_model
    from forgetflow.data.importer import import_dataset
    from forgetflow.workspace import init_workspace

    params = init_workspace(settings)
    data = import_dataset(settings, params, source).as_dict()
    trained = train_base_model(settings, params, data["name"], data["md5"], progress=progress)
    try:
        return register_base_model(settings, params, data, trained, source=source, run_name=f"bootstrap-{data['name']}-{data['md5'][:8]}")
    finally:
        cleanup(trained)
