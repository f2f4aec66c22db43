"""Lineage readable in MLflow's own UI: each version's description summarises it in a few lines
(batch, requests honoured, method, gate verdict against the reference, parent, data md5 before and
after, erasure status, certificates), and the registered model's description names the champion
and how to audit it. Rewritten from the tags and the ledger after every registry change, so it
never disagrees with them; only changed descriptions are written."""

from __future__ import annotations

from forgetflow.settings import Settings
from forgetflow.tracking import TAG_PREFIX

CERTIFICATE_FOLDER = "reports/audit/certificates"


def _batch_facts(entries: list[dict]) -> dict[str, dict]:
    """batch -> {requests, erased, verified, erased_at, promoted outcome} from the ledger."""
    batches: dict[str, dict] = {}
    for entry in entries:
        batch = entry.get("batch_id")
        if not batch:
            continue
        facts = batches.setdefault(batch, {"requests": [], "erased": False, "verified": None, "erased_at": None, "outcome": None})
        if entry["event"] == "batched" and entry["request_id"] not in facts["requests"]:
            facts["requests"].append(entry["request_id"])
        elif entry["event"] == "erased":
            facts["erased"], facts["erased_at"] = True, entry.get("at")
            facts["verified"] = bool(entry.get("verified")) if facts["verified"] is None else facts["verified"] and bool(entry.get("verified"))
        elif entry["event"] in ("promoted", "promoted-provisional"):
            facts["outcome"] = entry.get("outcome")
        elif entry["event"] == "failed":
            facts["outcome"] = entry.get("reason")
    return batches


def version_description(version: str, tags: dict, aliases: list[str], batches: dict[str, dict]) -> str:
    t = {k.removeprefix(TAG_PREFIX): v for k, v in tags.items() if k.startswith(TAG_PREFIX)}
    role = t.get("role", t.get("stage", "bootstrap"))
    batch = t.get("batch_id")
    facts = batches.get(batch or "", {})
    lines = []
    if t.get("superseded_by_erasure"):
        weights = t.get("weights", "kept")
        lines.append(f"**SUPERSEDED by erasure of batch `{t['superseded_by_erasure']}`**: trained on data since erased; weights {weights}. Do not deploy.")
    if aliases:
        lines.append("Aliases: " + ", ".join(f"`@{a}`" for a in aliases))
    if role == "candidate":
        requests = facts.get("requests") or [r for r in t.get("request_ids", "").split(",") if r]
        lines.append(f"Unlearned model of batch `{batch}`, honouring {len(requests)} request(s): {', '.join(f'`{r}`' for r in requests)}.")
        lines.append(f"Method: `{t.get('method', '?')}`. Gate against reference v{t.get('reference_version') or '-'}: **{'PASSED' if t.get('gate_passed') == 'True' else 'FAILED'}**.")
        if t.get("promotion"):
            lines.append(f"Promotion: {t['promotion']}.")
    elif role == "reference":
        lines.append(f"Reference of batch `{batch}`: retrained from scratch on the retained data (the gate's yardstick), standing beside champion v{t.get('replaces_version', '?')}.")
        if "champion" in aliases or (facts.get("outcome") or "").startswith("reference promoted"):
            lines.append("Promoted: the gate rejected the batch's candidate, so this retrained model honours the requests.")
    elif role == "adopted":
        lines.append(f"Adopted model (trained elsewhere), the first version; data `{t.get('dataset', '?')}`.")
    else:
        lines.append(f"Base model trained from scratch on `{t.get('dataset', '?')}`.")
    parent = t.get("parent_version")
    before, after = t.get("data_md5_before"), t.get("data_md5")
    data = f"data md5 `{before}` -> `{after}`" if before else f"data md5 `{after}`"
    lines.append(f"Parent: {'v' + parent if parent and parent != 'none' else 'none (trained from scratch)'}; {data}.")
    if batch:
        if facts.get("erased"):
            lines.append(f"Erasure: {'verified' if facts.get('verified') else 'NOT verified'} ({facts.get('erased_at', '')[:19]} UTC).")
        else:
            lines.append("Erasure: pending.")
        requests = facts.get("requests") or []
        if requests:
            lines.append("Certificates: " + ", ".join(f"`forgetflow audit certificate {r}` ({CERTIFICATE_FOLDER}/{r}.html)" for r in requests[:10]) + (" …" if len(requests) > 10 else ""))
    lines.append(f"Audit: `forgetflow audit model {version}`.")
    return "\n\n".join(lines)


def model_description(champion: str | None, tags: dict | None) -> str:
    t = {k.removeprefix(TAG_PREFIX): v for k, v in (tags or {}).items() if k.startswith(TAG_PREFIX)}
    if champion is None:
        head = "No champion yet."
    else:
        head = f"Champion: **v{champion}** ({t.get('role', t.get('stage', 'bootstrap'))}{', batch `' + t['batch_id'] + '`' if t.get('batch_id') else ''})."
    return "\n\n".join([
        "Managed by forgetflow: every version's lineage is in its description and `forgetflow.*` tags.",
        head,
        f"Audit it: `forgetflow audit model {champion or ''}`, `forgetflow audit report` (HTML), `forgetflow ledger verify` (checks the request ledger against the head anchored in these versions' `forgetflow.ledger_head` tags).",
    ])


def describe_registry(settings: Settings) -> int:
    """Rewrite the descriptions that changed; returns how many were written."""
    from forgetflow.deletion.registry import _client, version_aliases
    from forgetflow.requests.intake import open_ledger

    client = _client(settings)
    name = settings.registered_model_name
    aliases = version_aliases(settings)
    batches = _batch_facts(open_ledger(settings).entries())
    written = 0
    champion_tags = None
    for mv in client.search_model_versions(f"name='{name}'"):
        version = str(mv.version)
        text = version_description(version, mv.tags, aliases.get(version, []), batches)
        if "champion" in aliases.get(version, []):
            champion_tags = mv.tags
        if (mv.description or "") != text:
            client.update_model_version(name, version, description=text)
            written += 1
    champion = next((v for v, names in aliases.items() if "champion" in names), None)
    text = model_description(champion, champion_tags)
    if (client.get_registered_model(name).description or "") != text:
        client.update_registered_model(name, description=text)
        written += 1
    return written
