"""A deletion certificate per request: a self-contained JSON document (and its HTML rendering)
that an auditor can keep, and that `verify_certificate` re-checks against the workspace later.

It holds the request (kind, goal, reason, requester, pseudonymised targets), its times and clocks,
the data versions before and after, the model version that first excluded it and the champion at
issue, the gate evidence against the reference, the erasure proof (objects scanned, tombstone
SHA-256), the request's ledger entries with their hashes, the ledger head at issue, and the code
version. No sample data, no sample IDs and no clear-text subject ID: targets appear as counts and
digests (subjects as the ledger's salted tokens).

The seal is the SHA-256 of the canonical JSON of everything else, plus an HMAC keyed from the
workspace's secret salt: an edit is caught by the digest; a re-sealed forgery by the HMAC (which
only the workspace can recompute) and, field by field, by the re-derivation from ledger and MLflow.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime, timezone
from pathlib import Path

from forgetflow.errors import ForgetflowError
from forgetflow.settings import Settings

FORMAT = "forgetflow.deletion-certificate/1"
# Re-derived from the workspace on verification; these parts legitimately change after issue.
VOLATILE = ("issued_at", "seal", "code_version", "erasure.rechecked_at_issue", "model.champion_at_issue", "ledger.head_at_issue", "ledger.anchors_at_issue", "clocks")
_SEAL_CONTEXT = b"forgetflow deletion certificate seal v1"


def certificate_folder(settings: Settings) -> Path:
    return settings.workspace / "reports" / "audit" / "certificates"


def _canonical(doc: dict) -> bytes:
    body = {k: v for k, v in doc.items() if k != "seal"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str).encode()


def _seal_key(settings: Settings) -> bytes | None:
    from forgetflow.requests.pseudonyms import workspace_salt

    try:
        return hmac.new(workspace_salt(settings.state_dir, create=False), _SEAL_CONTEXT, hashlib.sha256).digest()
    except ForgetflowError:
        return None


def seal(settings: Settings, doc: dict) -> dict:
    raw = _canonical(doc)
    key = _seal_key(settings)
    return {"sha256": hashlib.sha256(raw).hexdigest(), **({"hmac_sha256": hmac.new(key, raw, hashlib.sha256).hexdigest()} if key else {})}


def _targets(received: dict) -> dict:
    """What was asked, without naming it: subjects as salted tokens, samples as count and digest."""
    kind, targets = received.get("kind"), received.get("targets") or []
    out = {"n": len(targets)}
    if kind == "subjects":
        out["subject_tokens"] = list(targets)  # HMAC-SHA256(workspace salt, subject ID): not reversible without the salt
    elif kind == "classes":
        out["classes"] = list(targets)
    else:
        out["sha256_of_sample_ids"] = hashlib.sha256(json.dumps(sorted(targets)).encode()).hexdigest()
    return out


def _entry_view(entry: dict) -> dict:
    from forgetflow.audit import HIDDEN_FIELDS

    return {k: v for k, v in entry.items() if k not in HIDDEN_FIELDS}


def build(settings: Settings, request_id: str, *, recheck: bool) -> dict:
    """The certificate's content (unsealed) from the ledger and MLflow."""
    from forgetflow.anchors import ledger_head, read_anchors
    from forgetflow.audit import COMPLIANT_EVENTS, REQUEST_FIELDS, _versions, request_clocks
    from forgetflow.deletion.registry import alias_version
    from forgetflow.lineage import code_version
    from forgetflow.requests.intake import open_ledger

    ledger = open_ledger(settings)
    entries = ledger.entries()
    status = ledger.status(request_id)
    if status is None:
        raise ForgetflowError(f"no request {request_id} in the ledger", "list requests with `forgetflow request list`")
    erased = status.last("erased")
    if erased is None:
        raise ForgetflowError(f"request {request_id} has no deletion to certify (state: {status.state})", _not_erased_hint(status))
    received = status.received or {}
    compliant = [e for e in status.history if e["event"] in COMPLIANT_EVENTS and e.get("champion_version") is not None]
    versions = _versions(settings)
    first = str(compliant[0]["champion_version"]) if compliant else None
    mv = versions.get(first or "", {})
    tags = mv.get("tags", {})
    evaluated = status.last("evaluated") or {}
    n, head = ledger_head(ledger)
    doc = {
        "format": FORMAT,
        "issued_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "code_version": code_version(),
        "registered_model": settings.registered_model_name,
        "request": {"request_id": request_id, **{k: received.get(k) for k in REQUEST_FIELDS if k in received}, "targets": _targets(received), "fingerprint": received.get("fingerprint")},
        "times": {"received_at": received.get("at"), "erased_at": erased.get("at")},
        "clocks": request_clocks(entries, request_id),
        "batch_id": erased.get("batch_id"),
        "data": {"dataset": tags.get("dataset"), "version_before": tags.get("data_md5_before"), "version_after": tags.get("data_md5")},
        "model": {
            "first_excluded_by": {"version": first, "run_id": mv.get("run_id"), "role": tags.get("role"), "method": tags.get("method"), "batch_id": tags.get("batch_id")} if first else None,
            "honoured_by_version": str(compliant[-1]["champion_version"]) if compliant else None,
            "champion_at_issue": alias_version(settings, "champion"),
        },
        "gate": {
            "passed": evaluated.get("gate_passed"), "reason": evaluated.get("reason"),
            "reference_version": tags.get("reference_version") or (first if tags.get("role") == "reference" else None),
            "version_gate_tag": tags.get("gate_passed"), "promotion": compliant[0].get("outcome") if compliant else None,
        },
        "erasure": {
            **{k: erased.get(k) for k in ("verified", "objects_removed", "objects_scanned", "run_cache_removed", "tombstone", "tombstone_sha256")},
        },
        "ledger": {
            "entries": [_entry_view(e) for e in status.history],
            "redacted_fields": ["sample_ids", "targets", "new_labels"],
            "head_at_issue": {"entries": n, "hash": head},
            "anchors_at_issue": len(read_anchors(settings)[0]),
        },
    }
    if recheck:
        from forgetflow.deletion.verify import verify_request

        check = verify_request(settings, request_id)
        doc["erasure"]["rechecked_at_issue"] = {"ok": check["ok"], "objects_scanned": check["objects_scanned"], "erased_images": check["n_hashes"], "problems": check["problems"][:5]}
    return doc


def _not_erased_hint(status) -> str:
    if status.state == "rejected":
        return f"it was rejected ({(status.last('rejected') or {}).get('reason', '')}): nothing was deleted"
    if status.state == "failed":
        return "its batch failed; see `forgetflow audit request ID`"
    return "a certificate is issued once its data is erased: run `forgetflow process`, or wait for the batch's verification"


def issue_certificate(settings: Settings, request_id: str, *, recheck: bool = True) -> dict:
    doc = build(settings, request_id, recheck=recheck)
    doc["seal"] = seal(settings, doc)
    return doc


def write_certificate(settings: Settings, request_id: str, out_dir: Path | None = None, *, recheck: bool = True) -> tuple[Path, Path]:
    from forgetflow.certificate_html import render_certificate
    from forgetflow.workspace import write_atomic

    doc = issue_certificate(settings, request_id, recheck=recheck)
    folder = Path(out_dir or certificate_folder(settings))
    json_path, html_path = folder / f"{request_id}.json", folder / f"{request_id}.html"
    write_atomic(json_path, json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n")
    write_atomic(html_path, render_certificate(doc))
    return json_path, html_path


def load_certificate(path: Path) -> dict:
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise ForgetflowError(f"no certificate file {path}", "pass the .json file written by `forgetflow audit certificate`") from exc
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ForgetflowError(f"{path} is not a readable JSON certificate ({exc})", "pass the .json file written by `forgetflow audit certificate`") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ForgetflowError(f"{path} is not a forgetflow deletion certificate (format {doc.get('format') if isinstance(doc, dict) else type(doc).__name__!r})", f"expected format {FORMAT}")
    return doc


def verify_certificate(settings: Settings, doc: dict, *, rescan: bool = True) -> list[str]:
    """Every mismatch between the certificate and the workspace, named by field; [] if it holds."""
    from forgetflow.anchors import check_anchors
    from forgetflow.requests.intake import open_ledger

    problems = []
    stored = doc.get("seal") or {}
    expected = seal(settings, doc)
    if stored.get("sha256") != expected["sha256"]:
        problems.append("seal: the certificate was edited after issue (its content does not match its SHA-256)")
    elif "hmac_sha256" in expected and stored.get("hmac_sha256") != expected["hmac_sha256"]:
        problems.append("seal: the HMAC was not made with this workspace's key (re-sealed elsewhere, or another workspace)")
    ledger = open_ledger(settings)
    chain = ledger.verify()
    if not chain.ok:
        problems.append(f"ledger: the chain is broken at entry {chain.first_bad}: {chain.problem}")
    anchors = check_anchors(settings, ledger)
    if not anchors.ok:
        problems.append(f"ledger anchor: {anchors.problem}")
    request_id = str((doc.get("request") or {}).get("request_id"))
    try:
        fresh = build(settings, request_id, recheck=False)
    except ForgetflowError as exc:
        return problems + [f"request: {exc.message}"]
    entries = ledger.entries()
    head = (doc.get("ledger") or {}).get("head_at_issue") or {}
    count = head.get("entries")
    if not isinstance(count, int) or count < 1 or count > len(entries) or entries[count - 1].get("hash") != head.get("hash"):
        problems.append(f"ledger.head_at_issue: the ledger's entry {count - 1 if isinstance(count, int) else '?'} no longer has the head hash recorded at issue")
    cert_entries = (doc.get("ledger") or {}).get("entries") or []
    fresh_entries = fresh["ledger"]["entries"]
    for index, entry in enumerate(cert_entries):
        if index >= len(fresh_entries):
            problems.append(f"ledger.entries[{index}] ({_describe(entry)}): no such entry of the request in the ledger")
        elif entry != fresh_entries[index]:
            fields = sorted(k for k in set(entry) | set(fresh_entries[index]) if entry.get(k) != fresh_entries[index].get(k))
            problems.append(f"ledger.entries[{index}] ({_describe(entry)}): differs from the ledger in {', '.join(fields)}")
    rest = {k: v for k, v in doc.items() if k not in ("ledger",)}
    problems += _differences(_strip(rest), _strip({k: v for k, v in fresh.items() if k != "ledger"}))
    if rescan:
        from forgetflow.deletion.verify import verify_request

        check = verify_request(settings, request_id)
        problems += [f"erasure: {p}" for p in check["problems"]]
    return problems


def _describe(entry) -> str:
    return f"seq {entry.get('seq')}, {entry.get('event')}" if isinstance(entry, dict) else "not an entry"


def _strip(doc: dict) -> dict:
    out = json.loads(json.dumps(doc, default=str))
    for path in VOLATILE:
        parent, _, key = path.rpartition(".")
        holder = out
        for part in parent.split(".") if parent else []:
            holder = holder.get(part) if isinstance(holder, dict) else None
        if isinstance(holder, dict):
            holder.pop(key, None)
    return out


def _differences(cert, fresh, path: str = "") -> list[str]:
    if isinstance(cert, dict) and isinstance(fresh, dict):
        out = []
        for key in sorted(set(cert) | set(fresh)):
            out += _differences(cert.get(key), fresh.get(key), f"{path}.{key}" if path else key)
        return out
    if cert != fresh:
        return [f"{path}: the certificate says {_short(cert)}, the workspace says {_short(fresh)}"]
    return []


def _short(value) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."
