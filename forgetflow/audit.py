"""Audit answers from the two records — the ledger and MLflow — each checked against the other.

- `audit_request(R)`: R's history, the model version that first excludes it, the gate evidence,
  the erasure proof and the two clocks;
- `model_chain(V)`: the chain of versions and batches back to the first training data;
- `audit_report()`: an HTML page (forgetflow/audit_report.py); certificates: forgetflow/certificate.py.

A disagreement between ledger and registry is reported as a finding, never smoothed over.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from forgetflow.clocks import request_clocks
from forgetflow.errors import ForgetflowError
from forgetflow.requests.intake import open_ledger
from forgetflow.report_format import test_accuracy
from forgetflow.settings import Settings
from forgetflow.tracking import TAG_PREFIX, configure


@dataclass
class RequestAudit:
    request_id: str
    state: str
    history: list[dict]
    batch_id: str | None = None
    excluded_by_version: str | None = None
    gate: dict | None = None
    erasure: dict | None = None
    ladder: dict | None = None  # the method ladder of the request's group: rungs tried, promoted rung, source
    request: dict | None = None  # kind, goal, reason, requester, number of targets (never the targets)
    rejection: str | None = None
    honoured_by_version: str | None = None  # the version standing for it now (a reference after a failed verification)
    clocks: dict | None = None
    findings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def batch_ladders(settings: Settings, batch_id: str) -> list[dict]:
    """The ladders climbed in one batch, from the ledger: one row per request group (requests that
    were unlearned together share one ladder), with the requests it served."""
    groups: dict[str, dict] = {}
    for entry in open_ledger(settings).entries():
        if entry.get("event") != "unlearned" or entry.get("batch_id") != batch_id:
            continue
        key = json.dumps([entry.get("ladder"), entry.get("promoted_rung"), entry.get("ladder_source")], sort_keys=True, default=str)
        group = groups.setdefault(key, {k: entry.get(k) for k in ("ladder", "promoted_rung", "ladder_source", "method", "seconds")} | {"requests": []})
        group["requests"].append(entry["request_id"])
    if not groups:
        raise ForgetflowError(f"no unlearning recorded for batch {batch_id} in the ledger", "list batches with `forgetflow request list` (column batch) or check the ID")
    return list(groups.values())


def _versions(settings: Settings) -> dict[str, dict]:
    configure(settings)
    from mlflow import MlflowClient

    from forgetflow.deletion.registry import version_aliases

    client = MlflowClient()
    aliases = version_aliases(settings)  # search_model_versions returns aliases=[] (MLflow limitation)
    out = {}
    for mv in client.search_model_versions(f"name='{settings.registered_model_name}'"):
        tags = {k.removeprefix(TAG_PREFIX): v for k, v in mv.tags.items() if k.startswith(TAG_PREFIX)}
        run = client.get_run(mv.run_id)
        out[str(mv.version)] = {
            "version": str(mv.version), "aliases": aliases.get(str(mv.version), []), "tags": tags, "run_id": mv.run_id,
            "experiment_id": run.info.experiment_id, "metrics": dict(run.data.metrics), "created": mv.creation_timestamp,
        }
    return out


REQUEST_FIELDS = ("kind", "goal", "n_targets", "reason", "requested_by", "urgent", "source", "received_at")
# Entry fields an audit shows: never sample IDs or targets (they name what was erased).
HIDDEN_FIELDS = frozenset({"sample_ids", "targets", "new_labels", "prev"})
COMPLIANT_EVENTS = ("promoted", "promoted-provisional", "verification-failed")


def audit_request(settings: Settings, request_id: str) -> RequestAudit:
    ledger = open_ledger(settings)
    entries = ledger.entries()
    status = ledger.status(request_id)
    if status is None:
        raise ForgetflowError(f"no request {request_id} in the ledger", "list requests with `forgetflow request list`")
    history = [{k: v for k, v in e.items() if k not in HIDDEN_FIELDS} for e in status.history]
    audit = RequestAudit(request_id, status.state, history)
    received = status.received or {}
    audit.request = {k: received.get(k) for k in REQUEST_FIELDS if k in received}
    audit.clocks = request_clocks(entries, request_id)
    rejected = status.last("rejected")
    if rejected is not None:
        audit.rejection = str(rejected.get("reason") or "rejected")
        audit.batch_id = rejected.get("batch_id")
    batched = status.last("batched")
    if batched is None:
        return audit
    audit.batch_id = batched["batch_id"]
    versions = _versions(settings)
    compliant = [e for e in status.history if e["event"] in COMPLIANT_EVENTS and e.get("champion_version") is not None]
    promoted = compliant[0] if compliant else None
    if compliant:
        audit.honoured_by_version = str(compliant[-1]["champion_version"])
    unlearned = status.last("unlearned")
    if unlearned and "ladder" in unlearned:
        audit.ladder = {k: unlearned.get(k) for k in ("ladder", "promoted_rung", "ladder_source", "method")}
    evaluated = status.last("evaluated")
    if evaluated:
        audit.gate = {"passed": evaluated.get("gate_passed"), "reason": evaluated.get("reason")}
    erased = status.last("erased")
    if erased:
        audit.erasure = {k: erased.get(k) for k in ("verified", "objects_removed", "objects_scanned", "run_cache_removed", "tombstone", "tombstone_sha256", "problems")}
    if promoted:
        version = str(promoted["champion_version"])
        audit.excluded_by_version = version
        mv = versions.get(version)
        if mv is None:
            audit.findings.append(f"ledger says v{version} was promoted for this request, but MLflow has no such version")
        else:
            if mv["tags"].get("batch_id") != audit.batch_id:
                audit.findings.append(f"v{version} carries batch_id {mv['tags'].get('batch_id')!r}, the ledger says {audit.batch_id!r}")
            if request_id not in mv["tags"].get("request_ids", "").split(","):
                audit.findings.append(f"v{version}'s request_ids tag does not name this request")
            audit.gate = {**(audit.gate or {}), "version_tags": {k: mv["tags"].get(k) for k in ("role", "method", "gate_passed", "data_md5", "data_md5_before", "forget_set_hash", "promotion")}}
    if promoted and audit.honoured_by_version != audit.excluded_by_version and audit.honoured_by_version not in versions:
        audit.findings.append(f"ledger says v{audit.honoured_by_version} honours this request, but MLflow has no such version")
    in_registry = [v for v, mv in versions.items() if request_id in mv["tags"].get("request_ids", "").split(",")]
    if in_registry and not status.last("registered"):
        audit.findings.append(f"MLflow versions {in_registry} name this request but the ledger has no registered entry")
    return audit


def model_chain(settings: Settings, version: str) -> tuple[list[dict], list[str]]:
    """[version, its parent, ..., the bootstrap version] with data md5 and method, plus findings."""
    versions = _versions(settings)
    if str(version) not in versions:
        raise ForgetflowError(f"no version {version} of {settings.registered_model_name}", "see `forgetflow model list`")
    ledger_batches = {}
    for entry in open_ledger(settings).entries():
        if entry.get("event") == "registered":
            ledger_batches.setdefault(entry["batch_id"], set()).update({str(entry.get("candidate_version")), str(entry.get("reference_version"))})
    chain, findings, seen, current = [], [], set(), str(version)
    while current and current != "none" and current not in seen:
        seen.add(current)
        mv = versions.get(current)
        if mv is None:
            findings.append(f"parent version {current} is missing from the registry")
            break
        tags = mv["tags"]
        role = tags.get("role", tags.get("stage"))
        # A reference is retrained from scratch (no parent model); its predecessor in the chain is
        # the champion it stood beside, so a promoted reference still shows where it came from.
        follows = tags.get("replaces_version") if role == "reference" else tags.get("parent_version")
        chain.append({
            "version": current, "role": role, "batch_id": tags.get("batch_id"), "method": tags.get("method", "train"),
            "data_md5": tags.get("data_md5"), "data_md5_before": tags.get("data_md5_before"), "aliases": mv["aliases"],
            "test_accuracy": test_accuracy(mv["metrics"]), "gate": _gate_label(tags), "relation": "retrained from scratch, replacing" if role == "reference" else "unlearned from",
            "superseded_by_erasure": tags.get("superseded_by_erasure"), "weights": tags.get("weights", "kept"),
        })
        batch = tags.get("batch_id")
        if batch and current not in ledger_batches.get(batch, set()):
            findings.append(f"v{current} says batch {batch}, but the ledger records no registration of v{current} in that batch")
        current = follows
    if chain and chain[-1]["role"] not in ("bootstrap", "reference", "adopted"):  # trained from scratch, or adopted as the first version
        findings.append("the chain does not end at a model trained from scratch (bootstrap or reference) or an adopted one")
    for child, parent in zip(chain, chain[1:]):
        if child.get("data_md5_before") and parent.get("data_md5") and child["data_md5_before"] != parent["data_md5"] and child["role"] == "candidate":
            findings.append(f"v{child['version']} was unlearned from data {child['data_md5_before'][:8]} but its parent v{parent['version']} was on {parent['data_md5'][:8]}")
    return chain, findings


def _gate_label(tags: dict) -> str:
    """The gate verdict as an auditor should read it: a reference is the yardstick, not gated."""
    role = tags.get("role", tags.get("stage"))
    if role == "reference":
        return "reference: retrained from scratch (the gate's yardstick)"
    if role != "candidate":
        return "-"
    return "passed" if tags.get("gate_passed") == "True" else "rejected"


def audit_report(settings: Settings, out_dir: Path | None = None) -> Path:
    """reports/audit/index.html (see forgetflow/audit_report.py)."""
    from forgetflow.audit_report import write_audit_report

    return write_audit_report(settings, out_dir)
