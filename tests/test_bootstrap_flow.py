"""The bootstrap flow end to end: real Prefect harness, real DVC repo, real SQLite MLflow store."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from forgetflow.data.store import DatasetVersion
from forgetflow.models import load_checkpoint
from forgetflow.settings import load_settings
from forgetflow.tracking import configure, download_checkpoint
from forgetflow.training import predict_logits

from conftest import make_workspace

pytestmark = pytest.mark.flow


@pytest.fixture(scope="module")
def bootstrapped(tmp_path_factory, prefect_harness):
    from flows.bootstrap import bootstrap

    ws = make_workspace(tmp_path_factory.mktemp("flow") / "ws")
    summary = bootstrap(workspace=str(ws), source="digits", progress=False)
    return load_settings(ws), summary


def test_registered_version_carries_the_real_dvc_md5(bootstrapped):
    settings, summary = bootstrapped
    from mlflow import MlflowClient

    configure(settings)
    dvc_md5 = yaml.safe_load((settings.data_dir / "digits.dvc").read_text())["outs"][0]["md5"].removesuffix(".dir")
    client = MlflowClient()
    mv = client.get_model_version_by_alias(settings.registered_model_name, "champion")
    assert str(mv.version) == "1" and summary["registration"]["version"] == "1"
    assert mv.tags["forgetflow.data_md5"] == dvc_md5 == summary["dataset"]["md5"]
    assert mv.tags["forgetflow.prefect_flow_run_id"] == summary["flow_run_id"]
    for key in ("forgetflow.code_version", "forgetflow.params_hash", "forgetflow.recipe_hash", "forgetflow.seed"):
        assert mv.tags[key]
    run = client.get_run(mv.run_id)
    inputs = run.inputs.dataset_inputs
    assert [i.dataset.digest for i in inputs] == [dvc_md5]
    assert run.data.metrics["test_accuracy"] == pytest.approx(summary["metrics"]["test_accuracy"])


def test_logged_checkpoint_reloads_with_the_same_predictions(bootstrapped, tmp_path):
    settings, summary = bootstrapped
    import mlflow

    path = download_checkpoint(settings, alias="champion", dst=tmp_path)
    model, payload = load_checkpoint(path)
    assert payload["extra"]["data_md5"] == summary["dataset"]["md5"]
    assert payload["layer_stats"] is not None  # PGU needs them
    test = DatasetVersion(settings.data_dir / "digits").load("test")
    logits = predict_logits(model, test.images)
    accuracy = float((logits.argmax(1).numpy() == test.labels).mean() * 100)
    assert accuracy == pytest.approx(summary["metrics"]["test_accuracy"], abs=1e-4)
    # The servable (torch.export) flavour predicts the same classes as the trainable checkpoint.
    served = mlflow.pytorch.load_model(f"models:/{settings.registered_model_name}@champion")
    with torch.no_grad():
        from forgetflow.training import to_tensor

        served_logits = served(to_tensor(test.images[:64]))
    assert torch.equal(served_logits.argmax(1), logits[:64].argmax(1))


def test_no_training_record_is_stored_as_an_input_example(bootstrapped, tmp_path):
    settings, _ = bootstrapped
    import json

    import mlflow

    local = mlflow.artifacts.download_artifacts(f"models:/{settings.registered_model_name}@champion", dst_path=str(tmp_path))
    example = json.loads(open(f"{local}/input_example.json").read())
    assert not np.any(np.asarray(example["inputs"] if isinstance(example, dict) and "inputs" in example else example, dtype=float))


def test_a_rejected_alias_leaves_no_orphan_version(bootstrapped, tmp_path):
    settings, summary = bootstrapped
    from mlflow import MlflowClient

    from forgetflow.errors import TrackingError
    from forgetflow.models import save_checkpoint
    from forgetflow.tracking import log_and_register

    path = download_checkpoint(settings, alias="champion", dst=tmp_path)
    model, _ = load_checkpoint(path)
    before = MlflowClient().search_model_versions(f"name='{settings.registered_model_name}'")
    with pytest.raises(TrackingError):
        log_and_register(
            settings, run_name="bad", model=model, checkpoint_path=save_checkpoint(model, tmp_path / "checkpoint.pt"),
            params={}, metrics={}, datasets=[{"name": "digits", "md5": summary["dataset"]["md5"], "source_url": "dvc://digits"}],
            tags={}, aliases=("v7",),  # MLflow reserves v<number> aliases: registration fails after the version exists
        )
    after = MlflowClient().search_model_versions(f"name='{settings.registered_model_name}'")
    assert len(after) == len(before)


def test_bootstrap_on_an_existing_champion_does_not_register_again(bootstrapped):
    settings, _ = bootstrapped
    from mlflow import MlflowClient
    from typer.testing import CliRunner

    from forgetflow.cli import app

    result = CliRunner().invoke(app, ["bootstrap", "-w", str(settings.workspace)])
    assert result.exit_code == 0, result.output
    assert "already bootstrapped" in result.output and "--force" in result.output
    assert len(MlflowClient().search_model_versions(f"name='{settings.registered_model_name}'")) == 1
