"""The demo, with the repository's own params.yaml (the shipped gate and ladders, the real recipe):
its deletion batch must promote an unlearned candidate, not the retrained reference."""

from __future__ import annotations

import pytest
import yaml

from forgetflow.requests.intake import open_ledger
from forgetflow.settings import load_settings

from conftest import REPO_PARAMS

pytestmark = pytest.mark.flow


def test_the_demo_batch_ships_an_unlearned_candidate(tmp_path, prefect_harness):
    from mlflow import MlflowClient

    from forgetflow.cli.pipeline import DEMO_REQUESTS, _run_bootstrap, run_demo_deletions
    from forgetflow.tracking import configure

    ws = tmp_path / "demo"
    ws.mkdir()
    (ws / "params.yaml").write_text(yaml.safe_dump(REPO_PARAMS, sort_keys=False))
    settings = load_settings(ws)
    _run_bootstrap(settings, "digits", None, download=False, reimport=False, force=False)
    run_demo_deletions(settings)

    configure(settings)
    client = MlflowClient()
    champion = client.get_model_version_by_alias(settings.registered_model_name, "champion")
    assert champion.tags["forgetflow.stage"] == "deletion"
    assert champion.tags["forgetflow.role"] == "candidate", "the demo shipped the retrained reference, not an unlearned model"
    assert champion.tags["forgetflow.gate_passed"] == "True"

    statuses = open_ledger(settings).statuses()
    for request_id in DEMO_REQUESTS[:3]:
        unlearned = statuses[request_id].last("unlearned")
        assert unlearned["promoted_rung"] is not None and unlearned["ladder_source"] == "shipped default"
        assert statuses[request_id].state == "erased"
    assert statuses["demo-invalid"].state == "rejected"
