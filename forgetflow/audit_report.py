"""reports/audit/index.html: what an auditor asks for on one page.

The ledger's verdict (chain and anchors), the lineage graph with a legend, accuracy along the
champion chain (retain-aware, references as markers), every version with its aliases, gate
verdict, weights state and links to MLflow and Prefect, and every request with its state history,
gate evidence, erasure proof or rejection reason, clocks and a link to its certificate. Stored
strings are escaped; no sample ID or clear-text subject ID is shown. `audit.json` holds the same.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

from forgetflow.report_format import STYLE, when
from forgetflow.report_format import escape as _e
from forgetflow.settings import Settings


def mlflow_ui(settings: Settings) -> str:
    uri = settings.tracking_uri
    return uri.rstrip("/") if uri.startswith(("http://", "https://")) else os.environ.get("FORGETFLOW_MLFLOW_UI_URL", "http://127.0.0.1:5000")


def prefect_ui() -> str:
    if os.environ.get("PREFECT_UI_URL"):
        return os.environ["PREFECT_UI_URL"].rstrip("/")
    api = os.environ.get("PREFECT_API_URL", "")
    return api.rstrip("/").removesuffix("/api") if api.startswith("http") else "http://127.0.0.1:4200"


def _link(url: str, label: str) -> str:
    return f'<a href="{_e(url)}">{_e(label)}</a>'


def write_audit_report(settings: Settings, out_dir: Path | None = None) -> Path:
    from forgetflow.anchors import check_anchors
    from forgetflow.audit import _versions, audit_request, model_chain
    from forgetflow.audit_plots import plot_lineage, plot_trends
    from forgetflow.certificate import write_certificate
    from forgetflow.errors import ForgetflowError
    from forgetflow.lineage import code_version
    from forgetflow.requests.intake import open_ledger
    from forgetflow.workspace import write_atomic

    out_dir = Path(out_dir or settings.workspace / "reports" / "audit")
    out_dir.mkdir(parents=True, exist_ok=True)
    versions = _versions(settings)
    ledger = open_ledger(settings)
    verification = ledger.verify()
    anchors = check_anchors(settings, ledger)
    champion = next((v for v, mv in versions.items() if "champion" in mv["aliases"]), None)
    chain = [link["version"] for link in reversed(model_chain(settings, champion)[0])] if champion else []
    graph = plot_lineage(versions, out_dir / "lineage.png")
    trend = plot_trends(versions, chain, out_dir / "metric_trends.png")
    audits, certificates = [], {}
    for request_id, status in ledger.statuses().items():
        audits.append(audit_request(settings, request_id))
        if status.last("erased") is not None:
            try:
                _, html_path = write_certificate(settings, request_id, out_dir / "certificates", recheck=False)
                certificates[request_id] = f"certificates/{html_path.name}"
            except ForgetflowError:
                pass
    generated = datetime.now(timezone.utc).isoformat(timespec="seconds")
    ui, prefect = mlflow_ui(settings), prefect_ui()
    page = _page(settings, versions, verification, anchors, audits, certificates, chain, generated, ui, prefect, graph.name, trend.name)
    index = out_dir / "index.html"
    write_atomic(index, page)
    document = {
        "generated_at": generated, "code_version": code_version(), "registered_model": settings.registered_model_name,
        "ledger": {"ok": verification.ok, "entries": verification.n_entries, "head": verification.head_hash, "problem": verification.problem, "anchors_ok": anchors.ok, "anchors_checked": anchors.checked, "anchor_problem": anchors.problem},
        "champion_chain": chain, "versions": versions, "requests": [a.as_dict() for a in audits], "certificates": certificates,
    }
    write_atomic(out_dir / "audit.json", json.dumps(document, indent=2, default=str))
    return index


def _page(settings, versions, verification, anchors, audits, certificates, chain, generated, ui, prefect, graph, trend) -> str:
    from forgetflow.lineage import code_version

    name = settings.registered_model_name
    if verification.ok and anchors.ok:
        ledger_line = f'<span class="ok">intact</span>: every entry\'s hash and chain link verified; {anchors.checked} anchors outside the ledger file agree'
    elif not verification.ok:
        ledger_line = f'<span class="bad">BROKEN at entry {verification.first_bad}</span>: {_e(verification.problem)}'
    else:
        ledger_line = f'<span class="bad">REWRITTEN</span>: {_e(anchors.problem)}'
    notes = "".join(f"<br><span class='muted'>{_e(n)}</span>" for n in anchors.notes)
    version_rows = "".join(_version_row(v, versions[v], name, ui, prefect) for v in sorted(versions, key=int))
    request_rows = "".join(_request_row(a, certificates) for a in audits)
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>forgetflow audit: {_e(name)}</title><style>{STYLE}</style></head><body>
<h1>forgetflow audit: {_e(name)}</h1>
<p>Generated {_e(when(generated))} by forgetflow {_e(code_version())}. MLflow UI: {_link(ui, ui)} (for a local store: <code>mlflow ui --backend-store-uri {_e(settings.tracking_uri)}</code>); Prefect UI: {_link(prefect, prefect)}.</p>
<p><b>Ledger:</b> {verification.n_entries} entries, {ledger_line}.{notes}</p>
<h2 id="lineage">Lineage</h2><img src="{_e(graph)}" alt="lineage graph of every registered version">
<p class="muted">Legend: colour = role (blue bootstrap, purple adopted, green unlearned candidate, orange reference retrained from scratch); faded = superseded (trained on data since erased); hatched = weights quarantined or deleted; solid arrow = parent to child; dashed orange arrow = the reference that judged a candidate.</p>
<h2 id="trends">Accuracy along the champion chain</h2><img src="{_e(trend)}" alt="accuracy along the champion chain">
<p class="muted">Chain: {_e(' -> '.join('v' + v for v in chain) or '-')}. Retain-aware accuracy counts only the classes still trained on, so removing a class is not shown as a regression. Stars: each batch's reference.</p>
<h2 id="versions">Model versions</h2>
<table><tr><th>version</th><th>aliases</th><th>role</th><th>method</th><th>gate</th><th>parent</th><th>data md5</th><th>superseded by erasure</th><th>weights</th><th>links</th></tr>{version_rows}</table>
<h2 id="requests">Requests</h2>
<table><tr><th>request</th><th>kind / goal</th><th>reason</th><th>state</th><th>history</th><th>gate evidence</th><th>erasure proof / rejection</th><th>clocks</th><th>certificate</th></tr>{request_rows}</table>
</body></html>"""


def _version_row(version: str, mv: dict, name: str, ui: str, prefect: str) -> str:
    from forgetflow.audit import _gate_label

    tags = mv["tags"]
    role = tags.get("role", tags.get("stage", ""))
    links = [_link(f"{ui}/#/models/{quote(name)}/versions/{quote(version)}", "MLflow version")]
    if mv.get("run_id"):
        links.append(_link(f"{ui}/#/experiments/{quote(str(mv.get('experiment_id', '0')))}/runs/{quote(mv['run_id'])}", "run"))
    if tags.get("prefect_flow_run_id"):
        links.append(_link(f"{prefect}/runs/flow-run/{quote(tags['prefect_flow_run_id'])}", "Prefect flow run"))
    parent = tags.get("parent_version", "")
    if role == "reference":
        parent = f"none (retrained; beside v{tags.get('replaces_version', '?')})"
    judged = f" vs reference v{_e(tags['reference_version'])}" if tags.get("reference_version") else ""
    return (
        f"<tr id='v{_e(version)}'><td>v{_e(version)}</td><td>{_e(', '.join(mv['aliases']))}</td><td>{_e(role)}</td><td>{_e(tags.get('method', 'train'))}</td>"
        f"<td>{_e(_gate_label(tags))}{judged}</td><td>{_e(parent)}</td><td><code>{_e(tags.get('data_md5', '')[:12])}</code></td>"
        f"<td>{_e(tags.get('superseded_by_erasure', ''))}</td><td>{_e(tags.get('weights', 'kept'))}</td><td>{' · '.join(links)}</td></tr>"
    )


def _request_row(audit, certificates: dict) -> str:
    request = audit.request or {}
    history = "".join(f"<li>{_e(when(e.get('at')))} <b>{_e(e.get('event'))}</b></li>" for e in audit.history)
    gate = audit.gate or {}
    if "passed" in gate:
        gate_cell = f"{'<span class=ok>passed</span>' if gate.get('passed') else '<span class=bad>rejected</span>'}: {_e(gate.get('reason'))}"
        if audit.excluded_by_version:
            gate_cell += f"<br>first excluded by <a href='#v{_e(audit.excluded_by_version)}'>v{_e(audit.excluded_by_version)}</a>"
    else:
        gate_cell = "–"
    if audit.rejection:
        proof = f"<span class=bad>rejected</span>: {_e(audit.rejection)}"
    elif audit.erasure:
        e = audit.erasure
        proof = (f"{'<span class=ok>verified</span>' if e.get('verified') else '<span class=bad>NOT verified</span>'}; objects removed {_e(e.get('objects_removed'))}; "
                 f"{_e(e.get('objects_scanned', '?'))} scanned; tombstone <code>{_e(str(e.get('tombstone_sha256'))[:12])}</code>")
    else:
        proof = "pending"
    clocks = audit.clocks or {}
    clock_cell = "<br>".join(f"{_e(k.removeprefix('time_to_').removesuffix('_s'))}: {_e(_hours(v))}" for k, v in clocks.items() if k.startswith("time_to_")) or "–"
    certificate = _link(certificates[audit.request_id], "certificate") if audit.request_id in certificates else "–"
    return (
        f"<tr><td><code>{_e(audit.request_id)}</code></td><td>{_e(request.get('kind'))} / {_e(request.get('goal'))}</td><td>{_e(request.get('reason'))}</td>"
        f"<td>{_e(audit.state)}</td><td><details><summary>{len(audit.history)} entries</summary><ul>{history}</ul></details></td>"
        f"<td>{gate_cell}</td><td>{proof}</td><td>{clock_cell}</td><td>{certificate}</td></tr>"
    )


def _hours(seconds) -> str:
    if seconds is None:
        return "–"
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds:.0f} s"
