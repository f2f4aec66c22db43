"""Quarantine: the forget sets of provisionally promoted batches, kept until a reference verifies them.

A batch gated without a reference (the fast path) promotes its candidate as a provisional
champion. Its forget set cannot be erased yet: the next reference must check the champion on it.
It stays only where the flow already has it, the pre-deletion DVC objects (local cache and
remote; `materialise_version` reads it back through hard links), and the batch state keeps the
sample IDs. The batch's scratch copies go at once. Each quarantined batch has a deadline
(`service.max_verification_delay` after its promotion); a verification is forced once the oldest
deadline is within `service.verification_margin`.

The erasure step of a provisional batch lands here instead (promotion.erase); the verification
(forgetflow.deletion.verification) marks the batch `verified` and then erases it.
"""

from __future__ import annotations

import json
import shutil
import time

from forgetflow.deletion.batch import BatchState, batches_dir
from forgetflow.settings import Settings


def batch_verification(state: BatchState) -> str:
    """What a reference still has to say about this batch's promotion: `verified` (gated against
    one), `not-needed` (no goal-`forget` group: misclassify/relabel are judged against the original),
    `pending` (fast path: the next reference verifies it) or `unverified` (policy `never`)."""
    ref = state.steps["reference"]
    if "checkpoint" in ref:
        return "verified"
    runs = [r for r in state.steps["unlearned"]["runs"] if "skipped" not in r]
    if not any(r["goal"] == "forget" for r in runs):
        return "not-needed"
    return "pending" if ref.get("fast_path") else "unverified"


def quarantine(settings: Settings, state: BatchState) -> dict:
    """The erasure step of a provisional batch: drop its scratch copies, record the deadline."""
    if state.done("quarantined"):
        return state.steps["quarantined"]
    from forgetflow.deletion.objects import drop_materialised
    from forgetflow.deletion.pipeline import batch_folder
    from forgetflow.params import load_params
    from forgetflow.service.config import service_params

    delay = service_params(load_params(settings.params_path)).max_verification_delay_s
    since = state.times.get("promoted", time.time())
    # The old champion's and the rungs' checkpoints are not needed; the candidate is registered.
    shutil.rmtree(batch_folder(settings, state.batch_id), ignore_errors=True)
    drop_materialised(settings, state.steps["versioned"]["md5_before"])  # hard links only; the DVC objects stay
    record = {
        "since": since,
        "deadline": since + delay,
        "kept_in": "pre-deletion DVC objects (cache and remote) of data version " + state.steps["versioned"]["md5_before"],
        "verification": {"ok": None},
        "superseded_versions": [],
    }
    return state.record(settings, "quarantined", record)


def pending_batches(settings: Settings) -> list[BatchState]:
    """Closed batches promoted provisionally and not yet erased, oldest first. (A batch still open
    is resumed by the next deletion run; a verification refuses to start while one is open.)"""
    folder = batches_dir(settings)
    if not folder.is_dir():
        return []
    states = [BatchState(**json.loads(p.read_text())) for p in sorted(folder.glob("batch-*.json"))]
    return [s for s in states if s.closed and s.steps.get("promoted", {}).get("provisional") and "erased" not in s.steps]


def quarantine_report(settings: Settings, now: float | None = None) -> list[dict]:
    """One row per pending batch: its requests, since when, its deadline and the time left."""
    from forgetflow.params import load_params
    from forgetflow.service.config import service_params

    delay = service_params(load_params(settings.params_path)).max_verification_delay_s
    now = time.time() if now is None else now
    rows = []
    for state in pending_batches(settings):
        # From the promotion, under today's delay (a shortened delay applies to batches already waiting).
        since = (state.steps.get("quarantined") or {}).get("since") or state.times.get("promoted")
        deadline = None if since is None else since + delay
        rows.append({
            "batch_id": state.batch_id, "requests": state.steps["validated"]["valid"],
            "champion_version": state.steps["promoted"]["champion"], "since": since,
            "deadline": deadline, "seconds_left": None if deadline is None else deadline - now,
            "verified": "verified" in state.steps,
        })
    return rows


def forced_verification(settings: Settings, now: float | None = None) -> str:
    """Why a verification cannot wait (a quarantine deadline is near or past), or ""."""
    from forgetflow.params import load_params
    from forgetflow.service.config import service_params

    margin = service_params(load_params(settings.params_path)).verification_margin_s
    now = time.time() if now is None else now
    for row in quarantine_report(settings, now):
        if row["deadline"] is not None and row["seconds_left"] <= margin:
            left = row["seconds_left"]
            when = f"expired {-left:.0f} s ago" if left < 0 else f"expires in {left:.0f} s"
            return f"the quarantine of {row['batch_id']} {when} (service.max_verification_delay)"
    return ""
