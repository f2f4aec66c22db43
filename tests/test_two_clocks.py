"""Two clocks: the fast path promotes a provisional champion; the next reference verifies it (or
is promoted in its place); forget sets wait in quarantine until then. Real DVC, MLflow and
training on tiny digits models, through the library runner (the flow calls the same steps)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time

import pytest
import yaml

from forgetflow.data.store import DatasetVersion
from forgetflow.deletion.runner import run_pending
from forgetflow.registration import bootstrap_workspace
from forgetflow.requests.intake import open_ledger, submit
from forgetflow.settings import load_settings

from conftest import make_workspace
from test_deletion_flow import lenient_evaluation

VERIFY = "from forgetflow.settings import load_settings; from forgetflow.deletion.verification import run_verification; run_verification(load_settings({ws!r}), if_due=True, progress=False)"
# Inside the standalone verification: after each recorded step, after a batch's verdict, after one erasure.
VERIFY_CRASH_POINTS = ["verification-checked", "verification-promoted", "verification-recorded", "verification-erased-one"]


def evaluation(policy: dict) -> dict:
    section = lenient_evaluation()
    section["reference"] = {**section["reference"], **policy}
    return section


def ask(settings, train, start: int, *, urgent: bool = False) -> str:
    ids = train.sample_id.iloc[start : start + 12].astype(int).tolist()
    return submit(settings, {"kind": "samples", "ids": ids, "reason": "erasure", "requested_by": "dpo@example.org", "urgent": urgent}).request_id


def events(settings, request_id: str) -> list[str]:
    return [e["event"] for e in open_ledger(settings).status(request_id).history]


def versions(settings) -> dict:
    from mlflow import MlflowClient

    from forgetflow.tracking import configure

    configure(settings)
    return {str(v.version): v for v in MlflowClient().search_model_versions(f"name='{settings.registered_model_name}'")}


def forget_set_objects_present(settings, request_id: str) -> bool:
    """The quarantined forget set can still be read from the pre-deletion DVC objects."""
    from forgetflow.deletion.objects import materialise_version, drop_materialised

    status = open_ledger(settings).status(request_id)
    batch = json.loads((settings.state_dir / "batches" / f"{status.last('batched')['batch_id']}.json").read_text())
    versioned = batch["steps"]["versioned"]
    old = materialise_version(settings, versioned["dataset"], versioned["md5_before"])
    ids = {int(s) for s in status.last("validated")["sample_ids"]}
    present = ids <= set(old.manifest.sample_id.tolist())
    drop_materialised(settings, versioned["md5_before"])
    return present


# 1. every_n_batches: 3 -> batches 1 and 2 provisional, batch 3 verifies all three ---------------------
@pytest.fixture(scope="module")
def three_batches(tmp_path_factory):
    ws = make_workspace(tmp_path_factory.mktemp("clocks") / "ws", evaluation=evaluation({"policy": "every_n_batches", "every_n_batches": 3}))
    settings = load_settings(ws)
    bootstrap_workspace(settings, "digits")
    manifest = DatasetVersion(settings.data_dir / "digits").manifest
    train = manifest[manifest.split == "train"].reset_index(drop=True)
    requests, snapshots = [], []
    for start in (0, 40, 80):
        requests.append(ask(settings, train, start))
        run_pending(settings, progress=False)
        snapshots.append({rid: (events(settings, rid), forget_set_objects_present(settings, rid) if "erased" not in events(settings, rid) else None) for rid in requests})
    return settings, requests, snapshots


def test_fast_path_batches_are_provisional_and_keep_their_forget_sets(three_batches):
    settings, requests, snapshots = three_batches
    for snapshot in snapshots[:2]:
        for request_id, (history, kept) in snapshot.items():
            assert history[-1] == "promoted-provisional" and "erased" not in history, history
            assert kept  # quarantined: still in the pre-deletion DVC objects
    first = open_ledger(settings).status(requests[0]).last("promoted-provisional")
    tags = versions(settings)[str(first["champion_version"])].tags
    assert tags["forgetflow.verification"] in ("pending", "verified")  # verified by now (batch 3)


def test_the_third_batch_verifies_all_three_and_erases_them(three_batches):
    from forgetflow.clocks import request_clocks
    from forgetflow.deletion.quarantine import pending_batches
    from forgetflow.deletion.verify import verify_request

    settings, requests, _ = three_batches
    ledger = open_ledger(settings)
    assert ledger.verify().ok
    for request_id in requests[:2]:
        assert events(settings, request_id)[-3:] == ["promoted-provisional", "verified", "erased"]
        assert verify_request(settings, request_id)["ok"]
    assert events(settings, requests[2])[-2:] == ["promoted", "erased"]
    assert verify_request(settings, requests[2])["ok"]
    assert pending_batches(settings) == []
    entries = ledger.entries()
    early, last = request_clocks(entries, requests[0]), request_clocks(entries, requests[2])
    assert early["verification"] == "verified" and early["time_to_compliance_s"] < early["time_to_verification_s"]
    assert last["compliant_at"] == last["verified_at"]  # gated against the batch's own reference
    all_versions = versions(settings)
    for request_id in requests[:2]:
        champion = str(ledger.status(request_id).last("promoted-provisional")["champion_version"])
        assert all_versions[champion].tags["forgetflow.verification"] == "verified"
    roles = sorted(v.tags.get("forgetflow.role", "bootstrap") for v in all_versions.values())
    assert roles == ["bootstrap", "candidate", "candidate", "candidate", "reference"]  # one reference, in batch 3


def test_audit_request_shows_both_clocks(three_batches):
    from typer.testing import CliRunner

    from forgetflow.cli import app

    settings, requests, _ = three_batches
    result = CliRunner().invoke(app, ["audit", "request", requests[0], "-w", str(settings.workspace)])
    assert "compliant:" in result.output and "verified:" in result.output, result.output
    result = CliRunner().invoke(app, ["audit", "request", requests[0], "--json", "-w", str(settings.workspace)])
    clocks = json.loads(result.output)["clocks"]
    assert clocks["verified_at"] and clocks["erased_at"] and clocks["time_to_verification_s"] > 0


# 2. urgent requests take the fast path; an expired deadline forces a verification, which fails ------
@pytest.fixture(scope="module")
def failed_verification(tmp_path_factory):
    ws = make_workspace(tmp_path_factory.mktemp("clocks-fail") / "ws", evaluation=evaluation({"policy": "always"}))
    settings = load_settings(ws)
    bootstrap_workspace(settings, "digits")
    manifest = DatasetVersion(settings.data_dir / "digits").manifest
    train = manifest[manifest.split == "train"].reset_index(drop=True)
    requests = []
    for start in (0, 40):
        requests.append(ask(settings, train, start, urgent=True))
        run_pending(settings, progress=False)
    before = {rid: events(settings, rid) for rid in requests}
    from forgetflow.deletion.verification import run_verification

    not_due = run_verification(settings, if_due=True, progress=False)
    # The deadline passes; the reference's verdict is made strict enough to fail (loss-MIA gap 0).
    params = yaml.safe_load(settings.params_path.read_text())
    params["service"] = {"max_verification_delay": "1s", "verification_margin": "1s"}
    params["evaluation"]["gate"]["forget"]["max_gap_loss_mia"] = 0.0
    settings.params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    codes = []
    for point in VERIFY_CRASH_POINTS:
        run = subprocess.run([sys.executable, "-c", VERIFY.format(ws=str(ws))], env={**env, "FORGETFLOW_CRASH_AFTER": point}, capture_output=True, text=True, timeout=600)
        codes.append(run.returncode)
    final = subprocess.run([sys.executable, "-c", VERIFY.format(ws=str(ws))], env=env, capture_output=True, text=True, timeout=600)
    return settings, requests, before, not_due, codes, final


def test_urgent_requests_take_the_fast_path(failed_verification):
    _, requests, before, not_due, _, _ = failed_verification
    for request_id in requests:
        assert before[request_id][-1] == "promoted-provisional"  # policy `always`, but urgent
    assert not_due["status"] == "not-due" and len(not_due["pending"]) == 2


def test_expired_deadline_forces_verification(failed_verification):
    settings, *_ = failed_verification
    from forgetflow.deletion.verification import verifications_dir

    [state] = [json.loads(p.read_text()) for p in verifications_dir(settings).glob("verify-*.json")]
    assert "max_verification_delay" in state["steps"]["planned"]["why"]
    assert state["closed"] and state["steps"]["summary"]["status"] == "failed"


def test_failed_verification_promotes_the_reference_and_survives_crashes(failed_verification):
    from forgetflow.clocks import request_clocks
    from forgetflow.deletion.registry import alias_version
    from forgetflow.deletion.verify import verify_request

    settings, requests, _, _, codes, final = failed_verification
    assert codes == [-9] * len(VERIFY_CRASH_POINTS)
    assert final.returncode == 0, final.stderr[-3000:]
    ledger = open_ledger(settings)
    assert ledger.verify().ok
    all_versions = versions(settings)
    references = [v for v in all_versions.values() if v.tags.get("forgetflow.role") == "reference"]
    assert len(references) == 1  # registered once across the crashes: no orphan version
    assert alias_version(settings, "champion") == str(references[0].version)
    for request_id in requests:
        history = events(settings, request_id)
        assert history.count("verification-failed") == 1 and history.count("erased") == 1, history
        assert history[-2:] == ["verification-failed", "erased"]
        assert ledger.status(request_id).last("verification-failed")["honoured_by_version"] == str(references[0].version)
        assert verify_request(settings, request_id)["ok"]
        assert request_clocks(ledger.entries(), request_id)["verification"].startswith("failed")


def test_deadline_check_is_a_pure_function_of_time(failed_verification, tmp_path):
    from forgetflow.evaluation.config import ReferenceParams
    from forgetflow.evaluation.reference import reference_due

    every = ReferenceParams(policy="every_n_batches", every_n_batches=3)
    assert not reference_due(every, 1)[0]
    assert reference_due(every, 1, forced="deadline")[0]
    assert not reference_due(ReferenceParams(policy="always"), 1, urgent=True)[0]
    assert not reference_due(ReferenceParams(policy="never"), 3, forced="deadline")[0]
    assert not reference_due(ReferenceParams(policy="schedule"), 5)[0]
