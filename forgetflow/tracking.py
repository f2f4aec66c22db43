"""MLflow adapter: runs, logged models with a trainable checkpoint, registry versions, aliases.

Lineage conventions (all keys prefixed `forgetflow.`): data_md5, params_hash, recipe_hash,
code_version, prefect_flow_run_id, source, seed, arch. The dataset is logged as a run input whose
digest is the DVC md5. Input examples are synthetic zeros: no training record ever lands in an
artifact. Registration is all or nothing: a version whose aliases or tags could not be set is
deleted again, so no orphan version is left behind.
"""

from __future__ import annotations

import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from forgetflow.deletion.batch import crash_point
from forgetflow.errors import TrackingError
from forgetflow.settings import Settings

TAG_PREFIX = "forgetflow."
CHECKPOINT_NAME = "checkpoint.pt"


def _quiet_mlflow_environment() -> None:
    # Fail fast instead of retrying for minutes against a dead server.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")


def check_tracking_uri(settings: Settings) -> None:
    """Raise a TrackingError naming the URI when MLflow cannot be used; writes nothing."""
    uri = settings.tracking_uri
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5) as response:
                if response.status != 200:
                    raise TrackingError(f"MLflow server {uri} answered {response.status} on /health", "check the server logs")
        except (urllib.error.URLError, OSError) as exc:
            raise TrackingError(
                f"MLflow tracking server {uri} is unreachable ({getattr(exc, 'reason', exc)})",
                "start it (mlflow server ...) or unset FORGETFLOW_MLFLOW_TRACKING_URI to use the embedded SQLite store",
            ) from exc
    elif uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        if not db.is_absolute():
            raise TrackingError(f"MLflow URI {uri} is relative", "use an absolute path: sqlite:////abs/path/mlflow.db")
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TrackingError(f"cannot create the MLflow store folder {db.parent} ({exc.strerror})", "choose a writable workspace") from exc
        if not os.access(db.parent, os.W_OK):
            raise TrackingError(f"the MLflow store folder {db.parent} is not writable", "choose a writable workspace or FORGETFLOW_MLFLOW_TRACKING_URI")
    elif not uri.startswith(("postgresql", "mysql", "databricks", "file:")):
        raise TrackingError(f"unsupported MLflow tracking URI {uri!r}", "use sqlite:////abs/path.db, http(s)://host:port or a database URI")


def configure(settings: Settings) -> str:
    """Point MLflow at the settings' store and make sure the experiment exists; return its ID."""
    _quiet_mlflow_environment()
    check_tracking_uri(settings)
    import mlflow

    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    try:
        experiment = mlflow.get_experiment_by_name(settings.experiment_name)
        if experiment is None:
            return mlflow.create_experiment(settings.experiment_name, artifact_location=settings.artifact_location)
        return experiment.experiment_id
    except Exception as exc:
        raise TrackingError(f"MLflow store {settings.tracking_uri} cannot be used: {exc}", "check FORGETFLOW_MLFLOW_TRACKING_URI") from exc


def lineage_tags(values: dict) -> dict[str, str]:
    return {f"{TAG_PREFIX}{key}": str(value) for key, value in values.items() if value is not None}


@dataclass
class Registration:
    run_id: str
    model_id: str
    model_uri: str
    name: str
    version: str
    aliases: list[str]


def log_and_register(
    settings: Settings,
    *,
    run_name: str,
    model,
    checkpoint_path: Path,
    params: dict,
    metrics: dict,
    datasets: list[dict],
    tags: dict,
    artifacts: dict[str, Path] | None = None,
    aliases: tuple[str, ...] = ("champion",),
) -> Registration:
    """One MLflow run: params, metrics, dataset inputs, model (pt2 + checkpoint), new registry version.

    `datasets`: [{name, md5, source_url, context ("training" | "forget" | ...), digest_kind}].
    """
    experiment_id = configure(settings)
    import mlflow
    import numpy as np
    from mlflow import MlflowClient
    from mlflow.data.http_dataset_source import HTTPDatasetSource
    from mlflow.data.meta_dataset import MetaDataset

    client = MlflowClient()
    spec = model.spec
    example = np.zeros((2, spec.in_channels, *spec.image_hw), dtype=np.float32)
    name = settings.registered_model_name
    version = None
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags) as run:
        try:
            mlflow.log_params(params)
            crash_point("register-run")  # crash tests: killed with the run open (it is ended KILLED on resume)
            for dataset in datasets:  # digests only: the data itself never goes to MLflow
                data = MetaDataset(source=HTTPDatasetSource(dataset["source_url"]), name=dataset["name"], digest=dataset["md5"])
                mlflow.log_input(data, context=dataset.get("context", "training"), tags={"digest_kind": dataset.get("digest_kind", "dvc_md5")})
            for artifact_dir, path in (artifacts or {}).items():
                mlflow.log_artifact(str(path), artifact_path=artifact_dir)
            with _quiet_torch_export():
                logged = mlflow.pytorch.log_model(
                    model.cpu().eval(),
                    name="model",
                    input_example=example,
                    # Given explicitly, MLflow skips inferring them (a subprocess import scan and a
                    # model run), which cost ~5 s per model on a 2-core CPU.
                    signature=_signature(model, example),
                    pip_requirements=serving_requirements(),
                    serialization_format="pt2",
                    extra_files=[str(checkpoint_path)],
                    params={k: v for k, v in params.items() if k.startswith("model.")},
                    tags=tags,
                )
            # Once, linked to the run and the logged model (logging them to both doubled every metric).
            mlflow.log_metrics(metrics, model_id=logged.model_id)
            mv = mlflow.register_model(logged.model_uri, name, tags=tags)
            version = mv.version
            client.set_registered_model_tag(name, "forgetflow.managed", "true")
            for alias in aliases:
                client.set_registered_model_alias(name, alias, version)
            client.set_model_version_tag(name, version, f"{TAG_PREFIX}run_id", run.info.run_id)
        except Exception as exc:
            if version is not None:  # no orphan version: remove what was half-registered
                try:
                    client.delete_model_version(name, version)
                except Exception:
                    pass
            mlflow.set_tag(f"{TAG_PREFIX}status", "failed")
            if isinstance(exc, TrackingError):
                raise
            raise TrackingError(f"logging or registering the model failed: {exc}", "see the MLflow run's tags and the error above") from exc
    return Registration(run.info.run_id, logged.model_id, logged.model_uri, name, str(version), list(aliases))


def serving_requirements() -> list[str]:
    """What loading the servable model needs, pinned to the versions that wrote it."""
    import mlflow
    import numpy
    import torch

    return [f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}", f"numpy=={numpy.__version__}"]


def _signature(model, example):
    import torch
    from mlflow.models import infer_signature

    with torch.no_grad():
        output = model.cpu().eval()(torch.from_numpy(example)).numpy()
    return infer_signature(example, output)


class _quiet_torch_export:
    """torch.export logs verbose warnings for every traced model; keep the console readable."""

    def __enter__(self):
        import logging

        self._loggers = [logging.getLogger(n) for n in ("torch._export", "torch.export", "torch._dynamo", "mlflow.pytorch")]
        self._levels = [lg.level for lg in self._loggers]
        for lg in self._loggers:
            lg.setLevel(logging.ERROR)
        return self

    def __exit__(self, *exc):
        for lg, level in zip(self._loggers, self._levels):
            lg.setLevel(level)


def download_checkpoint(settings: Settings, version: str | None = None, alias: str | None = None, dst: Path | None = None) -> Path:
    """Fetch the trainable checkpoint that travels with a registered version."""
    configure(settings)
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient()
    name = settings.registered_model_name
    mv = client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, version)
    from forgetflow.deletion.superseded import refuse_withdrawn

    refuse_withdrawn(mv.tags, str(mv.version), "loaded")
    dst = Path(dst or tempfile.mkdtemp(prefix="forgetflow-ckpt-"))
    # In MLflow 3 `mv.model_id` can be empty while `mv.source` is models:/m-<id>.
    model_id = mv.model_id or mv.source.removeprefix("models:/")
    location = mlflow.get_logged_model(model_id).artifact_location.rstrip("/")
    local = mlflow.artifacts.download_artifacts(artifact_uri=f"{location}/extra_files/{CHECKPOINT_NAME}", dst_path=str(dst))
    return Path(local)


def current_version(settings: Settings, alias: str = "champion") -> dict | None:
    """The registered version holding `alias` with its tags, or None when there is none."""
    configure(settings)
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        mv = MlflowClient().get_model_version_by_alias(settings.registered_model_name, alias)
    except MlflowException:
        return None
    return {"name": mv.name, "version": str(mv.version), "run_id": mv.run_id, "source": mv.source, "aliases": list(mv.aliases), "tags": dict(mv.tags)}
