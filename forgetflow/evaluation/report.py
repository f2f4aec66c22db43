"""The evaluation report of one candidate: a JSON-able dict, Markdown (also a Prefect artifact),
HTML, and the plots next to them. MLflow logging is the caller's (tasks/) job: log the folder
`write_report` returns as artifacts and `flat_metrics()` as metrics."""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass
from pathlib import Path

# key -> (label, direction). Directions as in docs/metrics.md.
METRIC_INFO: dict[str, tuple[str, str]] = {
    "forget_accuracy": ("Forget accuracy (FA)", "target = reference"),
    "unlearning_accuracy": ("UA = 100 - FA", "target = reference"),
    "retain_accuracy": ("Retain accuracy (RA)", "higher; target = reference"),
    "val_accuracy": ("Validation accuracy", "higher; target = reference"),
    "test_accuracy": ("Test accuracy (TA)", "higher; target = reference"),
    "forget_class_test_accuracy": ("Forget-class test accuracy", "lower (reference ~0)"),
    "retain_class_test_accuracy": ("Retain-class test accuracy", "higher; target = reference"),
    "misclassified_rate": ("Forget instances misclassified", "higher (goal: 100)"),
    "relabel_rate": ("Forget instances predicted as new label", "higher (goal: 100)"),
    "mia_efficacy": ("MIA-efficacy (SVC, %)", "target = reference"),
    "loss_mia": ("Loss-threshold MIA accuracy (%)", "target = reference (~50)"),
    "entropy_mia": ("Entropy MIA (% forget flagged member)", "target = reference"),
    "forget_mean_loss": ("Mean forget-set loss", "target = reference"),
    "forget_mean_confidence": ("Mean forget-set true-label confidence", "target = reference"),
}
CLOSENESS_INFO: dict[str, tuple[str, str]] = {
    "forget_js_divergence": ("JS divergence on forget set (nats)", "lower"),
    "forget_activation_distance": ("Activation distance on forget set", "lower"),
    "forget_prediction_agreement": ("Prediction agreement on forget set (%)", "higher"),
    "test_prediction_agreement": ("Prediction agreement on test set (%)", "higher"),
    "l2_weight_distance": ("L2 weight distance", "diagnostic"),
}
SUMMARY_INFO: dict[str, tuple[str, str]] = {
    "candidate_avg_gap": ("Avg. Gap to reference (candidate)", "lower"),
    "original_avg_gap": ("Avg. Gap to reference (original, for scale)", "lower"),
    "candidate_tow": ("ToW (candidate)", "higher (max 1)"),
    "original_tow": ("ToW (original, for scale)", "higher (max 1)"),
    "candidate_seconds": ("Unlearning wall time (s, one-off costs included)", "lower"),
    "reference_seconds": ("Reference retrain wall time (s)", "-"),
    "speed_up": ("Speed-up over retrain", "higher"),
}


def _clean(value):
    """JSON-safe number: NaN/inf become None (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def build_report(evaluation, *, title: str = "Unlearning evaluation", context: dict | None = None) -> dict:
    """Everything but the per-sample arrays, as plain JSON-able data."""
    roles = list(evaluation.metrics)
    keys = [k for k in METRIC_INFO if any(k in evaluation.metrics[r] for r in roles)]
    rows = []
    for key in keys:
        label, direction = METRIC_INFO[key]
        row = {"metric": key, "label": label, "direction": direction}
        for role in ("original", "candidate", "reference"):
            row[role] = _clean(evaluation.metrics.get(role, {}).get(key))
        if row["candidate"] is not None and row["reference"] is not None:
            row["candidate_minus_reference"] = row["candidate"] - row["reference"]
        rows.append(row)
    decision = evaluation.decision.as_dict()
    for check in decision["checks"]:
        check["value"], check["threshold"] = _clean(check["value"]), _clean(check["threshold"])
    return {
        "title": title,
        "context": context or {},
        "goal": evaluation.goal,
        "request_kind": evaluation.kind,
        "sizes": evaluation.sizes,
        "metrics": rows,
        "closeness": {pair: {k: _clean(v) for k, v in values.items()} for pair, values in evaluation.closeness.items()},
        "summary": {k: _clean(v) for k, v in evaluation.summary.items()},
        "gate": decision,
        "settings": evaluation.settings,
    }


def flat_metrics(report: dict) -> dict[str, float]:
    """`<role>.<metric>` -> value, for MLflow `log_metrics` (finite numbers only)."""
    flat = {}
    for row in report["metrics"]:
        for role in ("original", "candidate", "reference"):
            if row.get(role) is not None:
                flat[f"{role}.{row['metric']}"] = float(row[role])
    for pair, values in report["closeness"].items():
        flat.update({f"{pair}.{k}": float(v) for k, v in values.items() if v is not None})
    flat.update({f"summary.{k}": float(v) for k, v in report["summary"].items() if v is not None})
    flat["gate.passed"] = float(report["gate"]["passed"])
    return flat


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return f"{value:.{digits}f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    return str(value)


def _tables(report: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    """(heading, header, rows) for each table; shared by the Markdown and HTML renderers."""
    tables = []
    tables.append((
        "Metrics",
        ["metric", "direction", "original", "candidate", "reference", "candidate − reference"],
        [[r["label"], r["direction"], _fmt(r["original"]), _fmt(r["candidate"]), _fmt(r["reference"]), _fmt(r.get("candidate_minus_reference"))] for r in report["metrics"]],
    ))
    if report["closeness"]:
        pairs = list(report["closeness"])
        keys = [k for k in CLOSENESS_INFO if any(k in report["closeness"][p] for p in pairs)]
        tables.append((
            "Output closeness",
            ["measure", "direction", *[p.replace("_", " ") for p in pairs]],
            [[CLOSENESS_INFO[k][0], CLOSENESS_INFO[k][1], *[_fmt(report["closeness"][p].get(k), 4) for p in pairs]] for k in keys],
        ))
    summary = report["summary"]
    tables.append((
        "Against the reference",
        ["measure", "direction", "value"],
        [[SUMMARY_INFO.get(k, (k, ""))[0], SUMMARY_INFO.get(k, (k, ""))[1], _fmt(v, 3)] for k, v in summary.items()],
    ))
    tables.append((
        "Gate checks",
        ["check", "value", "needs", "against", "result", "detail"],
        [[c["name"], _fmt(c["value"]), f"{c['comparison']} {_fmt(c['threshold'])}", c["against"] or "absolute", "pass" if c["passed"] else "FAIL", c["detail"]] for c in report["gate"]["checks"]],
    ))
    return tables


def render_markdown(report: dict, images: dict[str, str] | None = None) -> str:
    gate = report["gate"]
    lines = [f"# {report['title']}", ""]
    lines.append(f"**Gate: {'PASS' if gate['passed'] else 'FAIL'}** — {gate['reason']}")
    lines.append("")
    lines.append(f"Request: kind `{report['request_kind']}`, goal `{report['goal']}`; sizes " + ", ".join(f"{k} {v}" for k, v in report["sizes"].items()) + ".")
    for key, value in report["context"].items():
        lines.append(f"- {key}: {value}")
    for note in gate["notes"]:
        lines.append(f"- note: {note}")
    for heading, header, rows in _tables(report):
        lines += ["", f"## {heading}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    if images:
        lines += ["", "## Plots", ""]
        lines += [f"![{name}]({src})" for name, src in images.items()]
    return "\n".join(lines) + "\n"


def render_html(report: dict, images: dict[str, str] | None = None) -> str:
    gate = report["gate"]
    e = html.escape
    colour = "#1a7f37" if gate["passed"] else "#cf222e"
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{e(report['title'])}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}th{background:#f4f4f4}.fail{color:#cf222e;font-weight:bold}</style></head><body>",
        f"<h1>{e(report['title'])}</h1>",
        f"<p style='color:{colour};font-weight:bold'>Gate: {'PASS' if gate['passed'] else 'FAIL'} — {e(gate['reason'])}</p>",
        f"<p>Request: kind <code>{e(report['request_kind'])}</code>, goal <code>{e(report['goal'])}</code>; sizes " + e(", ".join(f"{k} {v}" for k, v in report["sizes"].items())) + "</p><ul>",
    ]
    parts += [f"<li>{e(str(k))}: {e(str(v))}</li>" for k, v in report["context"].items()]
    parts += [f"<li>note: {e(n)}</li>" for n in gate["notes"]]
    parts.append("</ul>")
    for heading, header, rows in _tables(report):
        parts.append(f"<h2>{e(heading)}</h2><table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>")
        for row in rows:
            parts.append("<tr>" + "".join(f"<td{' class=fail' if cell == 'FAIL' else ''}>{e(cell)}</td>" for cell in row) + "</tr>")
        parts.append("</table>")
    for name, src in (images or {}).items():
        parts.append(f"<h3>{e(name)}</h3><img src='{e(src)}' alt='{e(name)}'>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


@dataclass
class ReportFiles:
    folder: Path
    json: Path
    markdown: Path
    html: Path
    plots: dict[str, Path]
    report: dict


def write_report(evaluation, folder: Path, *, title: str = "Unlearning evaluation", context: dict | None = None, plots: bool = True) -> ReportFiles:
    """report.json, report.md, report.html and the PNG plots in `folder` (images linked relatively)."""
    from forgetflow.evaluation.plots import write_plots
    from forgetflow.workspace import write_atomic

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    report = build_report(evaluation, title=title, context=context)
    pngs = write_plots(evaluation, folder) if plots else {}
    images = {name: path.name for name, path in pngs.items()}
    paths = (folder / "report.json", folder / "report.md", folder / "report.html")
    write_atomic(paths[0], json.dumps(report, indent=2) + "\n")
    write_atomic(paths[1], render_markdown(report, images))
    write_atomic(paths[2], render_html(report, images))
    return ReportFiles(folder, *paths, plots=pngs, report=report)
