"""Settings, params.yaml and the workspace layout."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from forgetflow.errors import ConfigError
from forgetflow.params import Params, load_params
from forgetflow.settings import load_settings
from forgetflow.workspace import DVC_YAML, init_workspace

REPO = Path(__file__).resolve().parent.parent


def test_repository_params_yaml_is_the_documented_default():
    params = load_params(REPO / "params.yaml")
    defaults = Params()
    assert params.data == defaults.data and params.model == defaults.model and params.train == defaults.train


def test_repository_dvc_yaml_declares_params_metrics_and_plots():
    assert yaml.safe_load((REPO / "dvc.yaml").read_text()) == DVC_YAML


def test_defaults_are_absolute_and_inside_the_workspace(tmp_path):
    settings = load_settings(tmp_path)
    assert settings.tracking_uri == f"sqlite:///{tmp_path}/mlflow/mlflow.db"
    assert settings.artifact_location == (tmp_path / "mlflow" / "artifacts").as_uri()
    assert settings.remote_url == str(tmp_path / ".forgetflow" / "dvc-remote")
    assert settings.resolved_device() == "cpu"


def test_environment_overrides(tmp_path, monkeypatch):
    monkeypatch.setenv("FORGETFLOW_WORKSPACE", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("FORGETFLOW_MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    monkeypatch.setenv("FORGETFLOW_SEED", "42")
    settings = load_settings()
    assert settings.workspace == tmp_path / "elsewhere"
    assert settings.tracking_uri == "http://127.0.0.1:5000" and settings.seed == 42
    assert load_settings(tmp_path / "cli").workspace == tmp_path / "cli"  # --workspace wins


def test_cuda_request_without_cuda_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="CUDA is not available"):
        load_settings(tmp_path, device="cuda").resolved_device()


def test_init_writes_default_params_and_dvc_yaml(tmp_path):
    settings = load_settings(tmp_path / "ws")
    params = init_workspace(settings)
    assert params == Params()
    assert yaml.safe_load((tmp_path / "ws" / "dvc.yaml").read_text()) == DVC_YAML
    assert (tmp_path / "ws" / "data").is_dir() and (tmp_path / "ws" / "mlflow").is_dir()


def test_invalid_params_name_the_field(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  optimizer: rmsprop\n")
    with pytest.raises(ConfigError, match="train.optimizer"):
        load_params(path)
    path.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(path)


def test_recipe_hash_ignores_data_section_but_tracks_training():
    base = Params()
    assert base.recipe_hash() == Params(data={"split_seed": 5}).recipe_hash()
    assert base.recipe_hash() != Params(train={"epochs": 3}).recipe_hash()
