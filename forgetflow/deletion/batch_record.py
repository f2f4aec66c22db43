"""What a batch leaves in MLflow for the auditor, beyond the run and the version themselves:

- after registration: each request's own gate verdict (tag `forgetflow.request_gates` and the
  artifact `request_gates.json` of the candidate run), the retain-aware accuracy (test samples of
  the classes still trained on: removing a class is not a regression), the ledger head anchor,
  and the versions' descriptions;
- after promotion and erasure: the anchor again (the batch's last entries) and the descriptions.

Every step is idempotent: a resumed batch writes the same values again.
"""

from __future__ import annotations

from pathlib import Path

from forgetflow.deletion.batch import BatchState
from forgetflow.settings import Settings
from forgetflow.tracking import TAG_PREFIX

RETAIN_AWARE_METRIC = "retain_classes_test_accuracy"


def _created(registered: dict) -> tuple[list[str], list[str]]:
    made = [registered[role] for role in ("candidate", "reference") if role in registered]
    return [m["version"] for m in made], [m["run_id"] for m in made]


def request_gates(settings: Settings, batch_id: str) -> dict[str, dict]:
    """request -> {passed, reason} from the batch's `evaluated` ledger entries."""
    from forgetflow.requests.intake import open_ledger

    return {
        e["request_id"]: {"passed": e.get("gate_passed"), "reason": e.get("reason")}
        for e in open_ledger(settings).entries()
        if e.get("event") == "evaluated" and e.get("batch_id") == batch_id
    }


def after_registration(settings: Settings, state: BatchState, registered: dict) -> None:
    """`registered`: {"candidate": {version, run_id}, "reference"?: {...}} (before the step is saved,
    so a crash in here re-runs it on resume)."""
    from forgetflow.anchors import anchor_batch
    from forgetflow.deletion.registry import _client

    client = _client(settings)
    gates = request_gates(settings, state.batch_id)
    candidate_run = registered["candidate"]["run_id"]
    summary = ",".join(f"{rid}:{'PASS' if g['passed'] else 'FAIL'}" for rid, g in sorted(gates.items()))
    client.set_model_version_tag(settings.registered_model_name, registered["candidate"]["version"], f"{TAG_PREFIX}request_gates", summary[:5000])
    client.set_tag(candidate_run, f"{TAG_PREFIX}request_gates", summary[:5000])
    client.log_dict(candidate_run, gates, "request_gates.json")
    _log_retain_aware(settings, state, registered, client)
    versions, runs = _created(registered)
    anchor_batch(settings, state.batch_id, "registered", versions=versions, run_ids=runs)
    describe(settings)


def after_erasure(settings: Settings, state: BatchState) -> None:
    from forgetflow.anchors import anchor_batch

    versions, runs = _created(state.steps.get("registered", {}))
    if versions:
        anchor_batch(settings, state.batch_id, "erased", versions=versions, run_ids=runs)
    describe(settings)


def describe(settings: Settings) -> None:
    from forgetflow.descriptions import describe_registry

    describe_registry(settings)


def _log_retain_aware(settings: Settings, state: BatchState, registered: dict, client) -> None:
    """Accuracy on the test samples of classes the data still trains on, for candidate and reference."""
    import numpy as np

    from forgetflow.data.store import DatasetVersion, LoadedSplit
    from forgetflow.models import load_checkpoint
    from forgetflow.training import evaluate

    versioned = state.steps["versioned"]
    data = DatasetVersion(settings.data_dir / versioned["dataset"])
    manifest = data.manifest
    kept = set(manifest.loc[manifest["split"] == "train", "label"].astype(int).unique().tolist())
    test = data.load("test")
    mask = np.isin(test.labels, sorted(kept))
    if not mask.any():
        return
    split = LoadedSplit(test.images[mask], test.labels[mask], test.sample_ids[mask])
    device = settings.resolved_device()
    checkpoints = {"candidate": state.steps["unlearned"].get("checkpoint"), "reference": state.steps["reference"].get("checkpoint")}
    for role, made in registered.items():
        path = checkpoints.get(role)
        if not path or not Path(path).exists():
            continue
        model, _ = load_checkpoint(Path(path))
        accuracy = evaluate(model.to(device), split, device)["accuracy"]
        if accuracy == accuracy:
            client.log_metric(made["run_id"], RETAIN_AWARE_METRIC, float(accuracy))
