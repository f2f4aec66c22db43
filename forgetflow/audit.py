"""Audit answers from the two records — the ledger and MLflow — each checked against the other.

- `audit_request(R)`: R's history, the model version that first excludes it, the gate evidence;
- `audit_model(V)`: the chain of versions and batches back to the first training data;
- `audit_report()`: an HTML page with the lineage graph, metric trends and the ledger check.

A disagreement between ledger and registry is reported as a finding, never smoothed over.
"""

from __future__ import annotations

import html
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from forgetflow.errors import ForgetflowError
from forgetflow.requests.intake import open_ledger
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

    client = MlflowClient()
    out = {}
    for mv in client.search_model_versions(f"name='{settings.registered_model_name}'"):
        tags = {k.removeprefix(TAG_PREFIX): v for k, v in mv.tags.items() if k.startswith(TAG_PREFIX)}
        run = client.get_run(mv.run_id)
        out[str(mv.version)] = {"version": str(mv.version), "aliases": list(mv.aliases), "tags": tags, "run_id": mv.run_id, "metrics": dict(run.data.metrics), "created": mv.creation_timestamp}
    return out


def audit_request(settings: Settings, request_id: str) -> RequestAudit:
    status = open_ledger(settings).status(request_id)
    if status is None:
        raise ForgetflowError(f"no request {request_id} in the ledger", "list requests with `forgetflow request list`")
    history = [{k: v for k, v in e.items() if k not in ("sample_ids", "prev")} for e in status.history]
    audit = RequestAudit(request_id, status.state, history)
    batched = status.last("batched")
    if batched is None:
        return audit
    audit.batch_id = batched["batch_id"]
    versions = _versions(settings)
    promoted = status.last("promoted")
    unlearned = status.last("unlearned")
    if unlearned and "ladder" in unlearned:
        audit.ladder = {k: unlearned.get(k) for k in ("ladder", "promoted_rung", "ladder_source", "method")}
    evaluated = status.last("evaluated")
    if evaluated:
        audit.gate = {"passed": evaluated.get("gate_passed"), "reason": evaluated.get("reason")}
    erased = status.last("erased")
    if erased:
        audit.erasure = {k: erased.get(k) for k in ("verified", "objects_removed", "run_cache_removed", "tombstone", "tombstone_sha256", "problems")}
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
        chain.append({"version": current, "role": tags.get("role", tags.get("stage")), "batch_id": tags.get("batch_id"), "method": tags.get("method", "train"), "data_md5": tags.get("data_md5"), "data_md5_before": tags.get("data_md5_before"), "aliases": mv["aliases"], "test_accuracy": _test_accuracy(mv["metrics"])})
        batch = tags.get("batch_id")
        if batch and current not in ledger_batches.get(batch, set()):
            findings.append(f"v{current} says batch {batch}, but the ledger records no registration of v{current} in that batch")
        current = tags.get("parent_version")
    if chain and chain[-1]["role"] not in ("bootstrap", "reference", "adopted"):  # trained from scratch, or adopted as the first version
        findings.append("the chain does not end at a model trained from scratch (bootstrap or reference) or an adopted one")
    for child, parent in zip(chain, chain[1:]):
        if child.get("data_md5_before") and parent.get("data_md5") and child["data_md5_before"] != parent["data_md5"] and child["role"] == "candidate":
            findings.append(f"v{child['version']} was unlearned from data {child['data_md5_before'][:8]} but its parent v{parent['version']} was on {parent['data_md5'][:8]}")
    return chain, findings


def _test_accuracy(metrics: dict) -> float | None:
    if "test_accuracy" in metrics:
        return metrics["test_accuracy"]
    keys = sorted(k for k in metrics if k.endswith("candidate.test_accuracy"))
    return metrics[keys[0]] if keys else None


def audit_report(settings: Settings, out_dir: Path | None = None) -> Path:
    """reports/audit/index.html: lineage graph, metric trends, ledger verification, requests."""
    from forgetflow.workspace import write_atomic

    out_dir = Path(out_dir or settings.workspace / "reports" / "audit")
    out_dir.mkdir(parents=True, exist_ok=True)
    versions = _versions(settings)
    verification = open_ledger(settings).verify()
    graph = plot_lineage(versions, out_dir / "lineage.png")
    trend = plot_trends(versions, out_dir / "metric_trends.png")
    statuses = open_ledger(settings).statuses()
    rows = "".join(
        f"<tr><td><code>{html.escape(rid)}</code></td><td>{html.escape(st.state)}</td><td>{html.escape(str((st.last('promoted') or {}).get('champion_version', '')))}</td><td>{html.escape(st.updated_at)}</td></tr>"
        for rid, st in statuses.items()
    )
    vrows = "".join(
        f"<tr><td>v{v}</td><td>{html.escape(', '.join(mv['aliases']))}</td><td>{html.escape(mv['tags'].get('role', mv['tags'].get('stage', '')))}</td><td>{html.escape(mv['tags'].get('method', 'train'))}</td><td><code>{html.escape(mv['tags'].get('data_md5', '')[:12])}</code></td><td>{html.escape(mv['tags'].get('parent_version', ''))}</td><td>{html.escape(mv['tags'].get('superseded_by_erasure', ''))}</td><td>{'changed' if mv['tags'].get('test_split_changed') == 'True' else ''}</td></tr>"
        for v, mv in sorted(versions.items(), key=lambda kv: int(kv[0]))
    )
    ledger_line = "intact: every entry's hash and chain link verified" if verification.ok else f"BROKEN at entry {verification.first_bad}: {verification.problem}"
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>forgetflow audit</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px}}</style></head><body>
<h1>forgetflow audit: {html.escape(settings.registered_model_name)}</h1>
<p><b>Ledger:</b> {verification.n_entries} entries, {html.escape(ledger_line)}.</p>
<h2>Lineage</h2><img src="{graph.name}" alt="lineage graph">
<h2>Metric trends</h2><img src="{trend.name}" alt="metric trends">
<h2>Model versions</h2><table><tr><th>version</th><th>aliases</th><th>role</th><th>method</th><th>data md5</th><th>parent</th><th>superseded by erasure</th><th>test split</th></tr>{vrows}</table>
<h2>Requests</h2><table><tr><th>request</th><th>state</th><th>excluded by version</th><th>updated</th></tr>{rows}</table>
</body></html>"""
    index = out_dir / "index.html"
    write_atomic(index, page)
    write_atomic(out_dir / "audit.json", json.dumps({"versions": versions, "ledger_ok": verification.ok}, indent=2, default=str))
    return index


def plot_lineage(versions: dict[str, dict], path: Path) -> Path:
    """Versions as boxes left to right, arrows from parent to child, coloured by role."""
    from forgetflow.plotting import pyplot

    plt = pyplot()

    ordered = sorted(versions, key=int)
    colours = {"bootstrap": "#4c72b0", "adopted": "#8172b2", "candidate": "#55a868", "reference": "#dd8452"}
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(ordered)), 3.2))
    lanes = {"bootstrap": 1, "adopted": 1, "candidate": 1, "reference": 0}
    position = {}
    for x, version in enumerate(ordered):
        tags = versions[version]["tags"]
        role = tags.get("role", tags.get("stage", "bootstrap"))
        y = lanes.get(role, 1)
        position[version] = (x, y)
        label = f"v{version}\n{tags.get('method', 'train')[:14]}\n{tags.get('data_md5', '')[:8]}"
        if versions[version]["aliases"]:
            label += "\n@" + ",".join(versions[version]["aliases"])
        ax.text(x, y, label, ha="center", va="center", fontsize=8, bbox={"boxstyle": "round", "facecolor": colours.get(role, "#999"), "alpha": 0.35 if tags.get("superseded_by_erasure") else 0.9})
    for version in ordered:
        parent = versions[version]["tags"].get("parent_version")
        if parent in position:
            (x0, y0), (x1, y1) = position[parent], position[version]
            ax.annotate("", xy=(x1 - 0.3, y1), xytext=(x0 + 0.3, y0), arrowprops={"arrowstyle": "->", "color": "#555"})
    ax.set_xlim(-0.7, len(ordered) - 0.3)
    ax.set_ylim(-0.7, 1.8)
    ax.axis("off")
    ax.set_title("Model lineage (faded: trained on data since erased)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_trends(versions: dict[str, dict], path: Path) -> Path:
    from forgetflow.plotting import pyplot

    plt = pyplot()

    ordered = sorted(versions, key=int)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    points = [(int(v), _test_accuracy(versions[v]["metrics"])) for v in ordered]
    points = [(v, a) for v, a in points if a is not None]
    if points:
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o")
    # From these versions on, test accuracy is measured on a smaller test split (samples deleted from it).
    changed = [int(v) for v in ordered if versions[v]["tags"].get("test_split_changed") == "True"]
    for index, version in enumerate(changed):
        ax.axvline(version - 0.5, color="#999", linestyle="--", linewidth=1, label="test split changed" if index == 0 else None)
    if changed:
        ax.legend(loc="lower left", fontsize=8)
    ax.set_xlabel("model version")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Test accuracy over versions")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
