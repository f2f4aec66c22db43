"""The HTML rendering of a deletion certificate: the same content as the JSON, for people.
Every stored string is escaped; the JSON file stays the document of record."""

from __future__ import annotations

import json

from forgetflow.report_format import STYLE, when
from forgetflow.report_format import escape as _e


def _rows(pairs) -> str:
    return "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in pairs)


def render_certificate(doc: dict) -> str:
    request, model, gate, erasure, ledger = (doc.get(k) or {} for k in ("request", "model", "gate", "erasure", "ledger"))
    first = model.get("first_excluded_by") or {}
    clocks = doc.get("clocks") or {}
    recheck = erasure.get("rechecked_at_issue")
    entries = "".join(
        f"<tr><td>{_e(e.get('seq'))}</td><td>{_e(when(e.get('at')))}</td><td>{_e(e.get('event'))}</td><td><code>{_e(str(e.get('hash'))[:16])}…</code></td>"
        f"<td>{_e(e.get('reason') or e.get('outcome') or '')}</td></tr>"
        for e in ledger.get("entries") or []
    )
    head = ledger.get("head_at_issue") or {}
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Deletion certificate {_e(request.get('request_id'))}</title><style>{STYLE}</style></head><body>
<h1>Deletion certificate</h1>
<p>Request <code>{_e(request.get('request_id'))}</code> · model <b>{_e(doc.get('registered_model'))}</b> · issued {_e(when(doc.get('issued_at')))} · code {_e(doc.get('code_version'))}</p>
<h2>Request</h2><table>{_rows([
    ("kind / goal", _e(f"{request.get('kind')} / {request.get('goal')}")), ("reason", _e(request.get("reason"))), ("requested by", _e(request.get("requested_by"))),
    ("targets (pseudonymised)", f"<code>{_e(json.dumps(request.get('targets'), sort_keys=True))}</code>"),
    ("received", _e(when((doc.get('times') or {}).get('received_at')))), ("erased", _e(when((doc.get('times') or {}).get('erased_at')))),
    ("time to compliance", _e(_duration(clocks.get("time_to_compliance_s")))), ("time to verification", _e(_duration(clocks.get("time_to_verification_s")))),
])}</table>
<h2>Data and model</h2><table>{_rows([
    ("batch", f"<code>{_e(doc.get('batch_id'))}</code>"), ("dataset", _e((doc.get('data') or {}).get('dataset'))),
    ("data version before", f"<code>{_e((doc.get('data') or {}).get('version_before'))}</code>"), ("data version after", f"<code>{_e((doc.get('data') or {}).get('version_after'))}</code>"),
    ("first excluded by", _e(f"v{first.get('version')} ({first.get('role')}, {first.get('method')})") if first else "–"),
    ("honoured by (now)", _e(f"v{model.get('honoured_by_version')}")), ("champion at issue", _e(f"v{model.get('champion_at_issue')}")),
])}</table>
<h2>Gate evidence</h2><table>{_rows([
    ("verdict", "<b>passed</b>" if gate.get("passed") else "<b>rejected</b> (the reference was promoted)" if gate.get("passed") is False else "–"),
    ("reason", _e(gate.get("reason"))), ("reference version", _e(gate.get("reference_version"))), ("promotion", _e(gate.get("promotion"))),
])}</table>
<h2>Erasure proof</h2><table>{_rows([
    ("verified at erasure", _e(erasure.get("verified"))), ("objects removed", _e(erasure.get("objects_removed"))), ("objects scanned", _e(erasure.get("objects_scanned"))),
    ("tombstone", f"<code>{_e(erasure.get('tombstone'))}</code>"), ("tombstone SHA-256", f"<code>{_e(erasure.get('tombstone_sha256'))}</code>"),
    ("re-checked at issue", _e(f"{'no copy found' if recheck.get('ok') else 'PROBLEMS: ' + '; '.join(recheck.get('problems') or [])} ({recheck.get('objects_scanned')} objects scanned)") if recheck else "not re-checked"),
])}</table>
<h2>Ledger</h2><p>Head at issue: {_e(head.get('entries'))} entries, hash <code>{_e(head.get('hash'))}</code>; {_e(ledger.get('anchors_at_issue'))} anchors outside the ledger file. Fields not shown: {_e(', '.join(ledger.get('redacted_fields') or []))}.</p>
<table><tr><th>seq</th><th>at</th><th>event</th><th>hash</th><th>detail</th></tr>{entries}</table>
<h2>Seal</h2><p>SHA-256 <code>{_e((doc.get('seal') or {}).get('sha256'))}</code><br>HMAC-SHA256 <code>{_e((doc.get('seal') or {}).get('hmac_sha256', '–'))}</code></p>
<p>Check it: <code>forgetflow audit verify-certificate {_e(request.get('request_id'))}.json</code></p>
</body></html>"""


def _duration(seconds) -> str:
    if seconds is None:
        return "–"
    seconds = float(seconds)
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"
