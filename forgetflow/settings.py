"""One settings object for the whole tool, read from FORGETFLOW_* environment variables.

Settings say *where* things live and *which device* runs; anything that changes results
(hyperparameters, splits, seeds of the recipe) lives in the workspace's params.yaml instead.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_workspace() -> Path:
    """The repository root when running from a checkout (editable install), else the CWD."""
    repo_root = Path(__file__).resolve().parent.parent
    if (repo_root / "pyproject.toml").is_file() and (repo_root / "params.yaml").is_file():
        return repo_root
    return Path.cwd()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FORGETFLOW_", extra="ignore")

    workspace: Path = Field(default_factory=_default_workspace, description="Root holding data/, mlflow/, params.yaml, dvc.yaml.")
    mlflow_tracking_uri: str | None = Field(default=None, description="Default: an absolute SQLite URI under <workspace>/mlflow/.")
    mlflow_artifact_location: str | None = Field(default=None, description="Default: <workspace>/mlflow/artifacts.")
    dvc_remote: str | None = Field(default=None, description="DVC remote URL or path. Default: <workspace>/.forgetflow/dvc-remote (written relative to .dvc/, so the workspace can move).")
    dvc_remote_config: dict[str, str] = Field(default_factory=dict, description='Extra DVC remote options as a JSON object, e.g. {"endpointurl": "http://minio:9000"} for S3-compatible storage.')
    device: Literal["auto", "cpu", "cuda", "mps"] | str = Field(default="auto", description="auto = cuda, then mps, then cpu; or e.g. cuda:1.")
    device_limit: str | None = Field(default=None, description="Name of the Prefect concurrency limit that gives one job per device. Default: forgetflow-device-<host>-<device>.")
    reference_deployment: str | None = Field(default=None, description="Send the reference retrain to this deployment (e.g. forgetflow-reference-retrain/gpu on a GPU work pool) instead of running it in the deletion flow.")
    seed: int | None = Field(default=None, description="Overrides params.yaml train.seed for this run (the seed used is always logged).")
    experiment_name: str = "forgetflow"
    registered_model_name: str = "forgetflow-classifier"

    @field_validator("workspace", mode="after")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    # Derived locations -------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        return self.workspace / "data"

    @property
    def state_dir(self) -> Path:
        """Tool-private state (Prefect home, scratch space, local DVC remote)."""
        return self.workspace / ".forgetflow"

    @property
    def mlflow_dir(self) -> Path:
        return self.workspace / "mlflow"

    @property
    def params_path(self) -> Path:
        return self.workspace / "params.yaml"

    @property
    def tracking_uri(self) -> str:
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{(self.mlflow_dir / 'mlflow.db').as_posix()}"

    @property
    def artifact_location(self) -> str | None:
        """None with a tracking server: the server's artifact store (e.g. `mlflow-artifacts:/` proxied to S3)."""
        if self.mlflow_artifact_location:
            return self.mlflow_artifact_location
        if self.tracking_uri.startswith(("http://", "https://")):
            return None
        return (self.mlflow_dir / "artifacts").as_uri()

    @property
    def remote_url(self) -> str:
        return self.dvc_remote or str(self.state_dir / "dvc-remote")

    def resolved_device(self) -> str:
        """The torch device string for this setting (imports torch)."""
        from forgetflow.device import resolve_device

        return resolve_device(self.device)

    def prefect_environment(self) -> dict[str, str]:
        """Prefect settings that keep the embedded default inside the workspace.

        Only fills in what the user has not set, so a real server (PREFECT_API_URL) wins.
        """
        env = {
            "PREFECT_HOME": str(self.state_dir / "prefect"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
            "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
            "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(self.state_dir / "prefect" / "storage"),
        }
        return {key: value for key, value in env.items() if key not in os.environ}


def load_settings(workspace: str | Path | None = None, *, follow_moves: bool = True, **overrides) -> Settings:
    """Settings from the environment, with an explicit workspace (CLI --workspace) taking priority.

    Every command, flow and task opens its workspace here, so this is where a workspace that was
    moved or copied since its stores were written is noticed and its stored locations rewritten
    (forgetflow/relocation.py; one small file read when nothing moved). `follow_moves=False` is for
    `forgetflow workspace relocate`, which does it itself and reports it."""
    if workspace is not None:
        overrides["workspace"] = Path(workspace)
    settings = Settings(**overrides)
    from forgetflow.architectures import add_import_root

    add_import_root(settings.workspace)  # `model.arch: MODULE:CALLABLE` factories live in the workspace
    if follow_moves:
        from forgetflow.relocation import follow_move

        follow_move(settings)
    return settings
