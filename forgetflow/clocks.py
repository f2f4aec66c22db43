"""The two clocks of a deletion request, read from its ledger entries.

- time to compliance: from `received` to the first deployed model that no longer reflects the
  data (`promoted` or `promoted-provisional` of the batch that holds the request);
- time to verification: from `received` to the retrained reference confirming that model (a
  `verified` entry, or a `promoted` entry gated against a reference in the same batch), or to the
  reference itself replacing it (`verification-failed`: the reference honours the request then).

    request_clocks(ledger_entries, request_id) -> {"submitted_at", "compliant_at", "verified_at",
        "erased_at", "time_to_compliance_s", "time_to_verification_s", "verification"}

Pure: no MLflow, no file access. Entries of other requests are ignored, so the whole ledger can
be passed. A request that was rejected or failed has no compliance time (None).
"""

from __future__ import annotations

from datetime import datetime

COMPLIANT_EVENTS = ("promoted", "promoted-provisional")
VERIFIED_EVENTS = ("verified", "verification-failed")
# An evaluated reason ends with this when the batch's gate ran without a reference (gate.decide).
_NO_REFERENCE_MARK = "without a reference"


def _parse(at: str | None) -> datetime | None:
    if not at:
        return None
    try:
        return datetime.fromisoformat(at)
    except (TypeError, ValueError):
        return None


def _seconds(start: str | None, end: str | None) -> float | None:
    a, b = _parse(start), _parse(end)
    if a is None or b is None:
        return None
    return round((b - a).total_seconds(), 3)


def promotion_was_verified(entry: dict, history: list[dict]) -> bool:
    """A `promoted` entry counts as verified when its batch gated against a reference: it says so
    (`reference_used`), or, for entries written before that field existed, its batch's `evaluated`
    entry does not say the gate ran without one."""
    if entry.get("event") != "promoted":
        return False
    if "verification" in entry:  # not-needed: misclassify/relabel only, judged against the original, final at once
        return entry["verification"] in ("verified", "not-needed")
    if "reference_used" in entry:
        return bool(entry["reference_used"])
    evaluated = next((e for e in reversed(history) if e.get("event") == "evaluated" and e.get("batch_id") == entry.get("batch_id")), None)
    return evaluated is None or _NO_REFERENCE_MARK not in str(evaluated.get("reason", ""))


def request_clocks(ledger_entries: list[dict], request_id: str) -> dict:
    """Both clocks of one request (see the module docstring). Timestamps are the ledger's ISO
    strings; durations are seconds from submission, None while the event has not happened."""
    history = [e for e in ledger_entries if e.get("request_id") == request_id]
    received = next((e for e in history if e.get("event") == "received"), None)
    batched = next((e for e in reversed(history) if e.get("event") == "batched"), None)
    batch_id = batched.get("batch_id") if batched else None

    def in_batch(entry: dict) -> bool:
        return batch_id is None or entry.get("batch_id") in (None, batch_id)

    compliant = next((e for e in history if e.get("event") in COMPLIANT_EVENTS and in_batch(e)), None)
    verified = next((e for e in history if (e.get("event") in VERIFIED_EVENTS) or promotion_was_verified(e, history)), None)
    erased = next((e for e in history if e.get("event") == "erased"), None)
    submitted_at = received.get("at") if received else None
    compliant_at = compliant.get("at") if compliant else None
    verified_at = verified.get("at") if verified else None
    if verified is None:
        verification = None if compliant is None else ("pending" if compliant.get("event") == "promoted-provisional" else "unverified")
    elif verified.get("event") == "verification-failed":
        verification = "failed: honoured by the reference"
    else:
        verification = verified.get("verification", "verified") if verified.get("event") == "promoted" else "verified"
    return {
        "submitted_at": submitted_at,
        "compliant_at": compliant_at,
        "verified_at": verified_at,
        "erased_at": erased.get("at") if erased else None,
        "time_to_compliance_s": _seconds(submitted_at, compliant_at),
        "time_to_verification_s": _seconds(submitted_at, verified_at),
        "verification": verification,
    }
