"""Crash safety: SIGKILL at every step boundary and inside steps, then a re-run finishes the
batch exactly once (one new version, no request applied twice or lost, ledger chain intact)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from forgetflow.data.importer import dvc_workspace
from forgetflow.data.store import DatasetVersion
from forgetflow.registration import bootstrap_workspace
from forgetflow.requests.intake import open_ledger, submit
from forgetflow.settings import load_settings

from conftest import make_workspace
from test_deletion_flow import lenient_evaluation

RUN = "from forgetflow.settings import load_settings; from forgetflow.deletion.runner import run_pending; run_pending(load_settings({ws!r}), progress=False)"
# Every step boundary in the flow's order, plus inside data versioning, the method ladder (after a
# rung, after a group) and erasure.
CRASH_POINTS = ["validated", "deletion-swapped", "versioned", "reference", "ladder-rung", "unlearn-group", "unlearned", "evaluated", "registered", "promoted", "erase-copies"]


def run_batch(ws, crash_after=None):
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    env.pop("FORGETFLOW_CRASH_AFTER", None)
    if crash_after:
        env["FORGETFLOW_CRASH_AFTER"] = crash_after
    return subprocess.run([sys.executable, "-c", RUN.format(ws=str(ws))], env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def crashed_and_resumed(tmp_path_factory):
    ws = make_workspace(tmp_path_factory.mktemp("crash") / "ws", evaluation=lenient_evaluation())
    settings = load_settings(ws)
    bootstrap_workspace(settings, "digits")
    manifest = DatasetVersion(settings.data_dir / "digits").manifest
    train = manifest[manifest.split == "train"]
    ids = [
        submit(settings, {"kind": "samples", "ids": train.sample_id.iloc[:8].astype(int).tolist(), "reason": "r", "requested_by": "x"}).request_id,
        submit(settings, {"kind": "classes", "ids": ["2"], "reason": "r", "requested_by": "x"}).request_id,
    ]
    codes = [run_batch(ws, point).returncode for point in CRASH_POINTS]
    final = run_batch(ws)
    return settings, ids, codes, final


def test_every_crash_was_a_real_sigkill(crashed_and_resumed):
    _, _, codes, final = crashed_and_resumed
    assert codes == [-9] * len(CRASH_POINTS)
    assert final.returncode == 0, final.stderr[-3000:]


def test_the_batch_finished_exactly_once(crashed_and_resumed):
    settings, ids, _, _ = crashed_and_resumed
    from mlflow import MlflowClient

    from forgetflow.tracking import configure

    ledger = open_ledger(settings)
    assert ledger.verify().ok
    batches = set()
    for request_id in ids:
        events = [e["event"] for e in ledger.status(request_id).history]
        assert events == ["received", "validated", "batched", "unlearned", "evaluated", "registered", "promoted", "erased"], events
        batches.add(ledger.status(request_id).last("batched")["batch_id"])
    assert len(batches) == 1
    configure(settings)
    versions = MlflowClient().search_model_versions(f"name='{settings.registered_model_name}'")
    roles = sorted(v.tags.get("forgetflow.role", "bootstrap") for v in versions)
    assert roles == ["bootstrap", "candidate", "reference"]  # one new version of each, not two


def test_data_version_is_whole_and_erasure_verified(crashed_and_resumed):
    settings, ids, _, _ = crashed_and_resumed
    from forgetflow.deletion.verify import verify_request

    root = settings.data_dir / "digits"
    version = DatasetVersion(root)
    assert not version.verify() and dvc_workspace(settings).status_clean(root)
    assert not list(root.parent.glob(".previous-*")) and not list(root.parent.glob(".staging-*"))
    assert 2 not in set(version.manifest[version.manifest.split == "train"].label)
    for request_id in ids:
        assert verify_request(settings, request_id)["ok"]
    state_files = list((settings.state_dir / "batches").glob("batch-*.json"))
    assert len(state_files) == 1 and json.loads(state_files[0].read_text())["closed"]
