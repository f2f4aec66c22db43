"""The workspace: the folder holding data/, mlflow/, params.yaml and dvc.yaml for one deployment."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import yaml

from forgetflow.errors import WorkspaceError
from forgetflow.params import Params, load_params
from forgetflow.settings import Settings

DVC_YAML = {
    # Prefect orchestrates; DVC versions data and tracks the parameters and metrics of each run.
    "params": ["params.yaml"],
    "metrics": ["reports/metrics.json"],
    "plots": [{"reports/training_history.csv": {"x": "epoch", "y": ["train_loss", "val_accuracy"]}}],
}


def ensure_writable(path: Path) -> None:
    """Fail early, before anything is written, if the workspace cannot take files."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-"):
            pass
    except OSError as exc:
        raise WorkspaceError(f"workspace {path} is not writable ({exc.strerror})", "pass a writable folder with --workspace DIR (or FORGETFLOW_WORKSPACE)") from exc


def init_workspace(settings: Settings) -> Params:
    """Create the folders and, where missing, params.yaml (defaults) and dvc.yaml; return the params."""
    root = settings.workspace
    ensure_writable(root)
    for folder in (settings.data_dir, settings.mlflow_dir, settings.state_dir, root / "reports"):
        folder.mkdir(parents=True, exist_ok=True)
    if not settings.params_path.exists():
        settings.params_path.write_text("# forgetflow hyperparameters (defaults); see the project README.\n" + yaml.safe_dump(Params().model_dump(), sort_keys=False))
    dvc_yaml = root / "dvc.yaml"
    if not dvc_yaml.exists():
        dvc_yaml.write_text(yaml.safe_dump(DVC_YAML, sort_keys=False))
    gitignore = settings.state_dir / ".gitignore"
    if not gitignore.exists():
        gitignore.write_text("*\n")
    return load_params(settings.params_path)


def write_atomic(path: Path, text: str) -> None:
    """Write a small text file so readers never see half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
