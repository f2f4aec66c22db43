"""Request intake: the Python API `submit`, and the inbox folder processed by `process_inbox`.

Every accepted request becomes one `received` entry in the ledger, in its pseudonymous form
(`record_fields`): subject IDs as salted hashes, plus a content fingerprint. Intake is idempotent:

- the same request ID again with the same content -> nothing is written (`already_recorded`);
- the same request ID with different content -> refused (the ID belongs to the first request);
- the same content under a new ID while an earlier request for it is still open or done ->
  recorded as `received`, then `rejected` as a duplicate naming the earlier request, so nothing is
  unlearned twice. Content that was rejected or failed before may be submitted again.

The check and the append run under the ledger's lock, so two processes submitting at once cannot
both record the same request.

Inbox: JSON files dropped into `<workspace>/data/requests/inbox/` (write them under a temporary
name starting with `.` or ending in `.tmp`/`.part`, then rename: those names are skipped) are
recorded and moved to `processed/`, or to `rejected/` next to a `<name>.reason.txt`. A malformed
file never stops intake and never reaches the ledger. Files in `processed/` still hold subject IDs
in clear text, so none is kept once its request is closed: a duplicate is removed at intake (the
ledger names the request it duplicates), the erasure step purges those of erased requests, and the
end of each batch those of rejected ones (`purge_processed`). Files in `rejected/` never reached the
ledger; they stay, with their reason, for whoever sent them to fix and resend.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from filelock import FileLock

from forgetflow.requests.ledger import Ledger, LEDGER_RELATIVE_PATH
from forgetflow.requests.pseudonyms import subject_token, workspace_salt
from forgetflow.requests.schema import DeletionRequest, RequestError, parse_request
from forgetflow.settings import Settings, load_settings

MAX_INBOX_FILE_BYTES = 64 * 1024 * 1024
_SKIPPED_SUFFIXES = (".tmp", ".part", ".partial")


@dataclass
class SubmitResult:
    request_id: str
    outcome: str  # recorded | already_recorded | duplicate
    duplicate_of: str | None = None
    urgent: bool = False
    announcement: object | None = None  # forgetflow.service.events.Announcement, when one was sent

    @property
    def message(self) -> str:
        if self.outcome == "duplicate":
            return f"request {self.request_id} duplicates request {self.duplicate_of}: recorded and rejected"
        if self.outcome == "already_recorded":
            return f"request {self.request_id} was already recorded: nothing written"
        return f"request {self.request_id} recorded"


@dataclass
class InboxReport:
    processed: list[tuple[str, SubmitResult]] = field(default_factory=list)  # (file name, result)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (file name, reason)
    announcement: object | None = None


def requests_dir(settings: Settings) -> Path:
    return settings.workspace / LEDGER_RELATIVE_PATH.parent


def open_ledger(settings: Settings) -> Ledger:
    return Ledger(settings.workspace / LEDGER_RELATIVE_PATH)


def _as_settings(settings: Settings | Path | str) -> Settings:
    return settings if isinstance(settings, Settings) else load_settings(settings)


def record_fields(request: DeletionRequest, salt: bytes) -> dict:
    """The ledger form of a request: subject IDs hashed, everything else as given."""
    targets = [subject_token(salt, s) for s in request.ids] if request.kind == "subjects" else list(request.ids)
    new_labels = list(request.new_labels) if request.new_labels is not None else None
    return {
        "kind": request.kind,
        "goal": request.goal,
        "targets": targets,
        "new_labels": new_labels,
        "n_targets": len(targets),
        "reason": request.reason,
        "requested_by": request.requested_by,
        "received_at": request.received_at.astimezone(timezone.utc).isoformat(),
        "urgent": request.urgent,
        "fingerprint": content_fingerprint(request.kind, request.goal, targets, new_labels),
    }


def content_fingerprint(kind: str, goal: str, targets: list, new_labels: list | None) -> str:
    """What the request asks, independent of ID, wording, order and repeats: SHA-256 of canonical JSON."""
    if new_labels is not None:
        what = sorted({json.dumps([t, n]) for t, n in zip(targets, new_labels)})
    else:
        what = sorted({json.dumps(t) for t in targets})
    blob = json.dumps({"kind": kind, "goal": goal, "what": what}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def submit(settings: Settings | Path | str, request: DeletionRequest | dict, *, source: str = "api", ledger: Ledger | None = None, announce: str = "background") -> SubmitResult:
    """Record a deletion request in the ledger (idempotent, see the module docstring).

    Pass the same `ledger` object for many submissions: it reads only what was appended since.
    A newly recorded request is then announced as a `forgetflow.request.received` event when a
    Prefect server is known: `announce="background"` queues the event (sent in batches by a
    background thread), `"wait"` sends it before returning (the result says whether it arrived),
    `"none"` leaves it to the caller.
    """
    [outcome] = submit_many(settings, [request], source=source, ledger=ledger, announce=announce)
    if isinstance(outcome, RequestError):
        raise outcome
    return outcome


def submit_many(settings: Settings | Path | str, requests: list, *, source: str = "api", ledger: Ledger | None = None, announce: str = "background") -> list:
    """Record several requests at once: one ledger group commit (one fsync) for all of them.

    Returns, in order, each request's SubmitResult, or the RequestError that refused it (a bad
    request never stops the others). The same rules as `submit`, also between the requests given.
    """
    settings = _as_settings(settings)
    ledger = ledger or open_ledger(settings)
    parsed = []
    for request in requests:
        try:
            parsed.append(parse_request(request))
        except RequestError as exc:
            parsed.append(exc)
    outcomes, records = [], []
    with ledger.lock:
        index = ledger.intake_index()
        # A fresh salt is only made while no subject token is recorded (else tokens would stop matching).
        salt = workspace_salt(settings.state_dir, create=not index.has_subjects)
        fingerprints: dict[str, str] = {}  # requests recorded by this call: ID -> fingerprint
        open_by_fingerprint: dict[str, str] = {}  # ... and the first of them per fingerprint
        for request in parsed:
            if isinstance(request, RequestError):
                outcomes.append(request)
                continue
            fields = record_fields(request, salt)
            fingerprint = fields["fingerprint"]
            known = index.fingerprints.get(request.request_id) or fingerprints.get(request.request_id)
            if known is not None:
                outcomes.append(
                    SubmitResult(request.request_id, "already_recorded") if known == fingerprint
                    else RequestError(f"request ID {request.request_id} is already used by a different request", "submit under a new ID (or leave the ID out to get a UUID)")
                )
                continue
            fingerprints[request.request_id] = fingerprint
            records.append(("received", request.request_id, {"source": source, **fields}))
            duplicate_of = index.first_open(fingerprint) or open_by_fingerprint.get(fingerprint)
            if duplicate_of is not None:
                records.append(("rejected", request.request_id, {"reason": f"duplicate of request {duplicate_of}", "duplicate_of": duplicate_of}))
                outcomes.append(SubmitResult(request.request_id, "duplicate", duplicate_of))
            else:
                open_by_fingerprint[fingerprint] = request.request_id
                outcomes.append(SubmitResult(request.request_id, "recorded", urgent=request.urgent))
        ledger.append_many(records)
    recorded = [o for o in outcomes if isinstance(o, SubmitResult) and o.outcome == "recorded"]
    if recorded and announce != "none":
        from forgetflow.service.events import announce as announce_requests

        announcement = announce_requests(settings, [(o.request_id, o.urgent) for o in recorded], wait=announce == "wait")
        for outcome in recorded:
            outcome.announcement = announcement
    return outcomes


# Inbox ---------------------------------------------------------------------------------------
def inbox_dir(settings: Settings) -> Path:
    return requests_dir(settings) / "inbox"


def process_inbox(settings: Settings | Path | str) -> InboxReport:
    """Pick up every JSON file in the inbox once; record it or reject it. Never raises for bad files."""
    settings = _as_settings(settings)
    inbox = inbox_dir(settings)
    report = InboxReport()
    if not inbox.is_dir():
        inbox.mkdir(parents=True, exist_ok=True)
        return report
    ledger = open_ledger(settings)
    # One inbox run at a time: two runs would race for the same file.
    with FileLock(str(requests_dir(settings) / "inbox.lock"), preserve_lock_file=True):
        files, requests = [], []
        for path in sorted(inbox.iterdir()):
            if not path.is_file() or path.name.startswith(".") or path.name.endswith(_SKIPPED_SUFFIXES):
                continue
            try:
                requests.append(_read_request_file(path))
                files.append(path)
            except RequestError as exc:
                _move(path, requests_dir(settings) / "rejected", reason=exc.message)
                report.rejected.append((path.name, exc.message))
        # One group commit for the sweep, and one event batch; files move only once it is durable,
        # so a crash in between re-reads them next time (recording is idempotent).
        outcomes = submit_many(settings, requests, source="inbox", ledger=ledger, announce="wait")
        for path, outcome in zip(files, outcomes):
            if isinstance(outcome, RequestError):
                _move(path, requests_dir(settings) / "rejected", reason=outcome.message)
                report.rejected.append((path.name, outcome.message))
                continue
            if outcome.outcome == "duplicate":  # rejected as recorded: keep no clear-text copy
                path.unlink()
            else:
                # Named after the request so erasure can purge it (it may hold subject IDs in clear text).
                _move(path, requests_dir(settings) / "processed", prefix=f"{outcome.request_id}--")
            report.processed.append((path.name, outcome))
        report.announcement = next((o.announcement for o in outcomes if isinstance(o, SubmitResult) and o.announcement is not None), None)
    return report


def _read_request_file(path: Path) -> DeletionRequest:
    """Decode one inbox file into a request; any problem becomes a RequestError."""
    if not path.name.endswith(".json"):
        raise RequestError(f"{path.name} is not a .json file", "drop deletion requests into the inbox as <name>.json")
    if path.stat().st_size > MAX_INBOX_FILE_BYTES:
        raise RequestError(f"{path.name} is larger than {MAX_INBOX_FILE_BYTES >> 20} MiB", "split the request into several files")
    try:
        data = json.loads(path.read_bytes().decode("utf-8"), parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    except UnicodeDecodeError:
        raise RequestError(f"{path.name} is not UTF-8 text", "save the request as UTF-8 JSON") from None
    except RecursionError:
        raise RequestError(f"{path.name} is nested too deeply to be a request", "see `forgetflow request submit --help` for the fields") from None
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity
        raise RequestError(f"{path.name} is not valid JSON ({_short(exc)})", "fix the JSON syntax and drop the file again") from None
    return parse_request(data)


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a JSON value")


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    """A key given twice is refused: JSON parsers disagree on which value wins (Python's, the last),
    so `"kind": "samples", ..., "kind": "classes"` must not quietly become a class request."""
    seen = set()
    for key, _ in pairs:
        if key in seen:
            raise ValueError(f"duplicate key {_short(json.dumps(key))}")
        seen.add(key)
    return dict(pairs)


def purge_processed(settings: Settings, request_ids) -> list[str]:
    """Remove the processed inbox copies (`<request_id>--<name>`) of these requests; returns the
    removed paths, relative to the workspace."""
    removed = []
    folder = requests_dir(settings) / "processed"
    for request_id in request_ids:
        for path in sorted(folder.glob(f"{request_id}--*")) if folder.is_dir() else []:
            path.unlink(missing_ok=True)
            removed.append(str(path.relative_to(settings.workspace)))
    return removed


def purge_closed(settings: Settings, ledger: Ledger | None = None) -> list[str]:
    """Processed copies of every request the ledger has rejected (at intake, by `request validate`
    or in a batch): the ledger keeps its pseudonymous record and the reason."""
    statuses = (ledger or open_ledger(settings)).statuses()
    folder = requests_dir(settings) / "processed"
    if not folder.is_dir():
        return []
    names = {path.name.split("--", 1)[0] for path in folder.iterdir() if "--" in path.name}
    return purge_processed(settings, sorted(rid for rid in names if rid in statuses and statuses[rid].state == "rejected"))


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) <= 120 else text[:117] + "..."


def _move(path: Path, folder: Path, *, reason: str | None = None, prefix: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{prefix}{path.name}"
    counter = 1
    while target.exists():
        target = folder / f"{prefix}{path.stem}-{counter}{path.suffix}"
        counter += 1
    os.replace(path, target)
    if reason is not None:
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        (folder / f"{target.name}.reason.txt").write_text(f"rejected {stamp}\n{reason}\n")
    return target
