"""The deletion flow end to end: one Prefect harness, real DVC and MLflow, two batches."""

from __future__ import annotations

import copy

import pytest
import yaml

from forgetflow.data.importer import dvc_workspace
from forgetflow.data.store import DatasetVersion
from forgetflow.requests.intake import open_ledger, submit
from forgetflow.settings import load_settings

from conftest import REPO_PARAMS, make_workspace

pytestmark = pytest.mark.flow


def lenient_evaluation() -> dict:
    """The repository's evaluation section with every gate threshold opened wide."""
    section = copy.deepcopy(REPO_PARAMS["evaluation"])
    for goal in section["gate"].values():
        for key in goal:
            goal[key] = 0.0 if key.startswith("min_") else 100.0
    return section


def ask(settings, kind, ids, **extra):
    return submit(settings, {"kind": kind, "ids": ids, "reason": "erasure request", "requested_by": "dpo@example.org", **extra}).request_id


@pytest.fixture(scope="module")
def two_batches(tmp_path_factory, prefect_harness):
    from flows.bootstrap import bootstrap
    from flows.deletion import process_deletions

    ws = make_workspace(tmp_path_factory.mktemp("deletion") / "ws", evaluation=lenient_evaluation())
    settings = load_settings(ws)
    bootstrap(workspace=str(ws), progress=False)
    manifest = DatasetVersion(settings.data_dir / "digits").manifest
    train = manifest[manifest.split == "train"]
    subject = train.subject_id.iloc[10]
    requests = {
        "samples": ask(settings, "samples", train.sample_id.iloc[:12].astype(int).tolist()),
        "subject": ask(settings, "subjects", [subject]),
        "class": ask(settings, "classes", [7]),
        "invalid": ask(settings, "samples", [10**9]),
    }
    md5_v0 = dvc_workspace(settings).md5(settings.data_dir / "digits")
    first = process_deletions(workspace=str(ws), progress=False)
    remaining = DatasetVersion(settings.data_dir / "digits").manifest
    later = ask(settings, "samples", remaining[remaining.split == "train"].sample_id.iloc[100:110].astype(int).tolist())
    second = process_deletions(workspace=str(ws), progress=False)
    return settings, requests, later, first, second, md5_v0


def test_batch_processes_valid_requests_and_rejects_the_invalid_one(two_batches):
    settings, requests, _, first, _, _ = two_batches
    summary = first[0]
    assert set(summary["valid"]) == {requests["samples"], requests["subject"], requests["class"]}
    assert list(summary["rejected"]) == [requests["invalid"]]
    statuses = open_ledger(settings).statuses()
    assert statuses[requests["invalid"]].state == "rejected"
    for key in ("samples", "subject", "class"):
        events = [e["event"] for e in statuses[requests[key]].history]
        assert events == ["received", "validated", "batched", "unlearned", "evaluated", "registered", "promoted", "erased"]
    assert [m["category"] for m in summary["methods"]] == ["classes", "instances"]  # class removal first
    assert open_ledger(settings).verify().ok


def test_lineage_tags_equal_the_real_hashes(two_batches):
    settings, _, _, first, _, md5_v0 = two_batches
    from mlflow import MlflowClient

    from forgetflow.tracking import configure

    configure(settings)
    client = MlflowClient()
    batch = first[0]
    candidate = client.get_model_version(settings.registered_model_name, batch["registered"]["candidate"]["version"])
    tags = candidate.tags
    assert tags["forgetflow.data_md5_before"] == md5_v0 == batch["data"]["md5_before"]
    assert tags["forgetflow.data_md5"] == batch["data"]["md5_after"]
    assert tags["forgetflow.batch_id"] == batch["batch_id"] and tags["forgetflow.parent_version"] == "1"
    # The gate is opened wide here, so each group's first shipped rung passes and is the method on record.
    from forgetflow.deletion.policy import SHIPPED_LADDERS

    first_rungs = f"{SHIPPED_LADDERS['classes']['forget'][0]['method']}+{SHIPPED_LADDERS['samples']['forget'][0]['method']}"
    assert tags["forgetflow.role"] == "candidate" and tags["forgetflow.method"] == first_rungs
    run = client.get_run(candidate.run_id)
    digests = {i.dataset.name: i.dataset.digest for i in run.inputs.dataset_inputs}
    assert digests["digits"] == batch["data"]["md5_after"]
    reference = client.get_model_version(settings.registered_model_name, batch["registered"]["reference"]["version"])
    assert reference.tags["forgetflow.role"] == "reference" and reference.tags["forgetflow.parent_version"] == "none"
    assert tags["forgetflow.reference_version"] == str(reference.version) and tags["forgetflow.reference_run_id"] == reference.run_id


def test_champion_alias_loads_the_newest_model(two_batches):
    settings, _, later, _, second, _ = two_batches
    assert second[0]["valid"] == [later], second[0]["rejected"]
    import mlflow
    import torch

    from forgetflow.deletion.registry import alias_version
    from forgetflow.training import to_tensor

    assert alias_version(settings, "champion") == second[0]["registered"]["candidate"]["version"] == second[0]["promotion"]["champion"]
    model = mlflow.pytorch.load_model(f"models:/{settings.registered_model_name}@champion")
    test = DatasetVersion(settings.data_dir / "digits").load("test")
    with torch.no_grad():
        assert model(to_tensor(test.images[:8])).shape == (8, 10)


def test_forgotten_data_is_gone_and_erasure_verify_proves_it(two_batches, tmp_path):
    settings, requests, _, first, _, md5_v0 = two_batches
    from forgetflow.deletion.objects import object_stores
    from forgetflow.deletion.verify import verify_request

    for key in ("samples", "subject", "class"):
        result = verify_request(settings, requests[key])
        assert result["ok"], result["problems"]
        assert result["n_hashes"] > 0
    current = DatasetVersion(settings.data_dir / "digits").manifest
    assert 7 not in set(current[current.split == "train"].label)
    # Plant a copy of a forgotten image back into the cache: the proof must fail.
    import numpy as np

    from forgetflow.data.sources import load_source

    forgotten = sorted(int(s) for s in open_ledger(settings).status(requests["samples"]).last("validated")["sample_ids"])
    raw = load_source("digits")
    cache = object_stores(settings)[0]
    planted = cache.path("f" * 32)
    import io
    import os

    os.makedirs(os.path.dirname(planted), exist_ok=True)
    buffer = io.BytesIO()
    np.save(buffer, raw.images[forgotten[:2]])
    with open(planted, "wb") as handle:
        handle.write(buffer.getvalue())
    try:
        result = verify_request(settings, requests["samples"])
        assert not result["ok"] and any("cache object" in p for p in result["problems"])
    finally:
        os.remove(planted)


def test_audit_reconstructs_the_chain_of_three_versions(two_batches):
    settings, requests, later, first, second, _ = two_batches
    from forgetflow.audit import audit_report, audit_request, model_chain

    champion = second[0]["promotion"]["champion"]
    chain, findings = model_chain(settings, champion)
    assert not findings, findings
    assert [link["version"] for link in chain] == [champion, first[0]["registered"]["candidate"]["version"], "1"]
    assert [link["role"] for link in chain] == ["candidate", "candidate", "bootstrap"]
    audit = audit_request(settings, requests["subject"])
    assert audit.excluded_by_version == first[0]["promotion"]["champion"] and not audit.findings
    assert audit.gate["passed"] is True and audit.erasure["verified"] is True
    assert audit_request(settings, later).batch_id == second[0]["batch_id"]
    report = audit_report(settings)
    assert report.exists() and (report.parent / "lineage.png").stat().st_size > 1000
    assert "intact" in report.read_text()


def test_superseded_versions_are_tagged(two_batches):
    settings, _, _, first, second, _ = two_batches
    from mlflow import MlflowClient

    v1 = MlflowClient().get_model_version(settings.registered_model_name, "1")
    assert v1.tags["forgetflow.superseded_by_erasure"] == first[0]["batch_id"]


def test_a_second_flow_waits_or_stops_clearly(two_batches):
    settings, *_ = two_batches
    from forgetflow.deletion.lock import WorkspaceBusyError, workspace_lock
    from flows.deletion import process_deletions

    with workspace_lock(settings, purpose="a running batch"):
        with pytest.raises(Exception) as raised:
            process_deletions(workspace=str(settings.workspace), progress=False)
    assert isinstance(raised.value, WorkspaceBusyError) or "busy" in str(raised.value)
    assert process_deletions(workspace=str(settings.workspace), progress=False) == []  # nothing pending
