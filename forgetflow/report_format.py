"""Shared look of the HTML audit pages: one stylesheet, escaping, human-readable timestamps, and
the test accuracy a registered version reports."""

from __future__ import annotations

import html
from datetime import datetime, timezone

STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}"
    "th{background:#f3f3f3}code{font-size:.9em}.ok{color:#1a7f37}.bad{color:#b42318;font-weight:bold}.muted{color:#777}"
    "img{max-width:100%}details{margin:.2em 0}"
)


def when(at) -> str:
    """'2025-06-01 14:03:07 UTC' from an ISO timestamp (the ledger keeps microseconds)."""
    if not at:
        return "–"
    try:
        moment = datetime.fromisoformat(str(at))
    except ValueError:
        return str(at)
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def escape(value) -> str:
    """HTML text of any value (None is empty)."""
    return html.escape("" if value is None else str(value))


def test_accuracy(metrics: dict) -> float | None:
    """A version's test accuracy: its own metric, or the candidate's of the batch run that logged it."""
    if "test_accuracy" in metrics:
        return metrics["test_accuracy"]
    keys = sorted(k for k in metrics if k.endswith("candidate.test_accuracy"))
    return metrics[keys[0]] if keys else None
