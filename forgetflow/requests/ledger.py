"""The request ledger: an append-only, hash-chained JSON-lines file - forgetflow's audit store.

Prefect and MLflow keep no immutable history, so every state change of a deletion request is one
line of `<workspace>/data/requests/ledger.jsonl`:

    {"at":...,"event":"received","prev":"<hash of entry seq-1>","request_id":...,"seq":7,...,"hash":"<sha256>"}

- `hash` is the SHA-256 of the entry's canonical JSON without the `hash` key (the line's bytes up to
  the hash, closed with `}`), so an edited entry no longer matches its own hash;
- `prev` is the previous entry's hash (64 zeros for the first), so removing, inserting or moving an
  entry breaks the chain, and `seq` numbers entries 0, 1, 2, ... so the first bad position is named;
- `ledger.jsonl.head` holds the sequence number, hash and byte size after the last append
  (fixed-size, rewritten in place), so cutting entries off the end is detected as well.

A consistent rewrite of the whole file *and* the head cannot be detected from inside the workspace;
anchor the head hash somewhere else (e.g. an MLflow tag of each registered model version) for that.

Appends take an exclusive file lock, write the line(s) with one `write` (rolled back with
`ftruncate` if it comes up short) and fsync before returning, so two processes appending at once
lose nothing, a returned append survives a crash, and a reader never sees half an entry.
`append_many` commits several entries with one fsync. Subject IDs never reach the ledger in clear text (see `pseudonyms`); sample IDs
do, because they are pseudonymous indices into the manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from filelock import FileLock

from forgetflow.errors import DataIntegrityError
from forgetflow.requests.schema import RequestError, is_valid_request_id

EVENTS: tuple[str, ...] = ("received", "rejected", "validated", "batched", "unlearned", "evaluated", "registered", "promoted", "erased", "failed",
                           # two clocks: promoted on the reference-free gate, then confirmed or overruled by a reference
                           "promoted-provisional", "verified", "verification-failed")
# A request in one of these states will not move on; a new request with the same content is allowed.
CLOSED_STATES = frozenset({"rejected", "failed"})
RESERVED_FIELDS = frozenset({"seq", "at", "event", "request_id", "prev", "hash"})
GENESIS = "0" * 64
LEDGER_RELATIVE_PATH = Path("data") / "requests" / "ledger.jsonl"

_HASH_KEY = b',"hash":"'
_SUFFIX_LEN = len(_HASH_KEY) + 64 + 2  # ,"hash":"<64 hex>"}
_HEAD_SIZE = 192  # the head record is padded to a fixed size and rewritten in place


def _jsonable(value):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (Path, datetime)):
        return str(value) if isinstance(value, Path) else value.isoformat()
    raise TypeError(f"ledger fields must be JSON values, not {type(value).__name__}")


def encode_entry(body: dict) -> tuple[bytes, str]:
    """The stored line (with newline) and hash of an entry body (everything but `hash`)."""
    raw = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False, default=_jsonable).encode()
    digest = hashlib.sha256(raw).hexdigest()
    return raw[:-1] + _HASH_KEY + digest.encode() + b'"}\n', digest


def _line_digest(line: bytes) -> tuple[str | None, str | None]:
    """(stored hash, recomputed hash) of one line without its newline; (None, None) if it has no hash suffix."""
    if len(line) <= _SUFFIX_LEN or line[-_SUFFIX_LEN : -_SUFFIX_LEN + len(_HASH_KEY)] != _HASH_KEY or not line.endswith(b'"}'):
        return None, None
    stored = line[-66:-2].decode("ascii", "replace")
    return stored, hashlib.sha256(line[:-_SUFFIX_LEN] + b"}").hexdigest()


@dataclass
class Verification:
    """Outcome of `Ledger.verify()`. `first_bad` is the 0-based position of the first bad entry."""

    ok: bool
    n_entries: int
    first_bad: int | None = None
    problem: str | None = None
    warnings: list[str] = field(default_factory=list)
    head_hash: str | None = None


@dataclass
class RequestStatus:
    """A request's current state (its last event) and its whole history, oldest first."""

    request_id: str
    state: str
    history: list[dict]

    @property
    def received(self) -> dict | None:
        return next((e for e in self.history if e["event"] == "received"), None)

    def last(self, event: str) -> dict | None:
        return next((e for e in reversed(self.history) if e["event"] == event), None)

    @property
    def updated_at(self) -> str:
        return self.history[-1]["at"]


@dataclass
class IntakeIndex:
    """Per request: its current state and received fingerprint; per fingerprint: its requests."""

    states: dict[str, str] = field(default_factory=dict)
    fingerprints: dict[str, str] = field(default_factory=dict)
    by_fingerprint: dict[str, list[str]] = field(default_factory=dict)  # in order of receipt
    has_subjects: bool = False

    def add(self, entry: dict) -> None:
        request_id = entry["request_id"]
        self.states[request_id] = entry["event"]
        if entry["event"] == "received" and "fingerprint" in entry:
            self.fingerprints[request_id] = entry["fingerprint"]
            self.by_fingerprint.setdefault(entry["fingerprint"], []).append(request_id)
            self.has_subjects = self.has_subjects or entry.get("kind") == "subjects"

    def first_open(self, fingerprint: str) -> str | None:
        """The first request received with this fingerprint that is not closed (rejected/failed)."""
        return next((rid for rid in self.by_fingerprint.get(fingerprint, ()) if self.states[rid] not in CLOSED_STATES), None)


def request_statuses(entries: list[dict]) -> dict[str, RequestStatus]:
    """Status and history of every request in the entries, in order of first appearance."""
    statuses: dict[str, RequestStatus] = {}
    for entry in entries:
        status = statuses.get(entry["request_id"])
        if status is None:
            statuses[entry["request_id"]] = RequestStatus(entry["request_id"], entry["event"], [entry])
        else:
            status.history.append(entry)
            status.state = entry["event"]
    return statuses


class Ledger:
    """`Ledger(path).append(event, request_id, **fields)`, `.entries()`, `.verify()`, `.status(request_id)`.

    Also `.append_many([(event, request_id, fields), ...])` (one atomic group commit), `.statuses()`
    and `.repair_head()`; `with ledger.lock:` makes a read-check-append sequence atomic.
    """

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.head_path = self.path.with_name(self.path.name + ".head")
        # One lock object per ledger object: re-entrant, so `with ledger.lock:` can wrap appends.
        self.lock = FileLock(str(self.path) + ".lock", preserve_lock_file=True, poll_interval=0.002)
        self._cache: list[dict] = []
        self._cache_size = 0
        self._intake = IntakeIndex()

    @classmethod
    def in_workspace(cls, workspace: Path) -> "Ledger":
        return cls(Path(workspace) / LEDGER_RELATIVE_PATH)

    # Writing ------------------------------------------------------------------------------
    def append(self, event: str, request_id: str, **fields) -> dict:
        """Record one state change of a request; returns the stored entry (with `seq` and `hash`)."""
        return self.append_many([(event, request_id, fields)])[0]

    def append_many(self, records: list[tuple[str, str, dict]]) -> list[dict]:
        """Record several state changes at once, all or nothing: one write, one fsync (group commit).

        For a batch moving many requests on together (e.g. `batched`), and much faster than
        one append per entry when fsync is slow.
        """
        records = [(event, request_id, dict(fields)) for event, request_id, fields in records]
        for event, request_id, fields in records:
            _check_record(event, request_id, fields)
        if not records:
            return []
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.lock:
            created = not self.path.exists()
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                size = os.fstat(fd).st_size
                seq, prev = self._tail(fd, size)
                at = datetime.now(timezone.utc).isoformat(timespec="microseconds")
                lines, stored = [], []
                for offset, (event, request_id, fields) in enumerate(records):
                    body = {"seq": seq + offset, "at": at, "event": event, "request_id": request_id, "prev": prev, **fields}
                    line, prev = encode_entry(body)
                    lines.append(line)
                    stored.append({**body, "hash": prev})
                data = b"".join(lines)
                written = os.write(fd, data)
                if written != len(data):  # disk full: never leave part of an entry behind
                    os.ftruncate(fd, size)
                    raise DataIntegrityError(f"could not append to the ledger {self.path} (wrote {written} of {len(data)} bytes)", "free disk space and retry")
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:
                _fsync_dir(self.path.parent)
            self._write_head(stored[-1]["seq"], prev, size + len(data))
        return stored

    def _tail(self, fd: int, size: int) -> tuple[int, str]:
        """Sequence number and `prev` hash for the next entry."""
        head = self._read_head()
        if head is not None and head["size"] == size:
            return head["seq"] + 1, head["hash"]
        if size == 0:
            if head is not None:
                raise DataIntegrityError(f"the ledger {self.path} is empty but its head records {head['seq'] + 1} entries: entries were deleted", "restore the ledger from a backup")
            return 0, GENESIS
        if head is None:
            raise DataIntegrityError(f"the ledger head {self.head_path} is missing or unreadable", "run `forgetflow ledger verify`; if the chain is intact, `forgetflow ledger verify --repair-head` rewrites the head")
        if head["size"] > size:
            raise DataIntegrityError(f"the ledger {self.path} is shorter than its head records: entries were cut off the end", "restore the ledger from a backup; run `forgetflow ledger verify`")
        # The head is behind (a crash between the fsynced append and the head update): continue
        # from the last complete entry, which must itself be intact.
        last = _read_last_line(fd, size)
        stored, actual = _line_digest(last)
        if stored is None or stored != actual:
            raise DataIntegrityError(f"the last entry of the ledger {self.path} is damaged", "run `forgetflow ledger verify` to find the first bad entry")
        return json.loads(last)["seq"] + 1, stored

    def _read_head(self) -> dict | None:
        try:
            with open(self.head_path, "rb") as handle:
                head = json.loads(handle.read(_HEAD_SIZE).rstrip(b" \n\0"))
            if isinstance(head, dict) and isinstance(head.get("seq"), int) and isinstance(head.get("size"), int) and isinstance(head.get("hash"), str):
                return head
        except (OSError, ValueError):
            pass
        return None

    def _write_head(self, seq: int, digest: str, size: int, *, sync: bool = False) -> None:
        """Rewrite the head in place (one small write within a page: no rename, no torn file).

        Not fsynced after appends: the entry itself is fsynced first, so after a power loss the
        head can only lag behind the ledger - a warning in `verify()`, fixed by the next append -
        never run ahead of it. This halves the fsyncs per append.
        """
        record = json.dumps({"seq": seq, "hash": digest, "size": size}, sort_keys=True).encode().ljust(_HEAD_SIZE - 1) + b"\n"
        fd = os.open(self.head_path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.pwrite(fd, record, 0)
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)

    def repair_head(self) -> Verification:
        """Rewrite the head from the ledger, only if the whole chain verifies (after a crash or a lost head file)."""
        with self.lock:
            result = self.verify(check_head=False)
            if not result.ok:
                raise DataIntegrityError(f"not repairing the head: {result.problem}", "restore the ledger from a backup")
            if result.n_entries:
                self._write_head(result.n_entries - 1, result.head_hash, self.path.stat().st_size, sync=True)
            return self.verify()

    # Reading ------------------------------------------------------------------------------
    def entries(self) -> list[dict]:
        """All entries, oldest first (parsed, not verified: use `verify()` for that).

        Reads only what was appended since the last call; a file that shrank is re-read.
        """
        self._refresh()
        return list(self._cache)

    def intake_index(self) -> "IntakeIndex":
        """What intake checks each new request against, kept up to date incrementally (no rescan)."""
        self._refresh()
        return self._intake

    def _refresh(self) -> None:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size < self._cache_size or size == 0:
            self._cache, self._cache_size, self._intake = [], 0, IntakeIndex()
        if size > self._cache_size:
            with open(self.path, "rb") as handle:
                handle.seek(self._cache_size)
                chunk = handle.read(size - self._cache_size)
            complete = chunk[: chunk.rfind(b"\n") + 1]
            new = [json.loads(line) for line in complete.splitlines() if line]
            self._cache.extend(new)
            self._cache_size += len(complete)
            for entry in new:
                self._intake.add(entry)

    def statuses(self) -> dict[str, RequestStatus]:
        return request_statuses(self.entries())

    def status(self, request_id: str) -> RequestStatus | None:
        history = [entry for entry in self.entries() if entry["request_id"] == request_id]
        return RequestStatus(request_id, history[-1]["event"], history) if history else None

    def verify(self, *, check_head: bool = True) -> Verification:
        """Check every entry's own hash, sequence number and link, then the head; name the first bad entry."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            data = b""
        lines = data.split(b"\n")
        complete, tail = lines[:-1], lines[-1]
        prev = GENESIS
        for position, line in enumerate(complete):
            problem = _entry_problem(position, line, prev)
            if problem:
                return Verification(False, len(complete), position, problem)
            prev = line[-66:-2].decode()
        result = Verification(True, len(complete), head_hash=prev if complete else None)
        if tail:
            return Verification(False, len(complete), len(complete), f"entry {len(complete)} is incomplete (no newline): a torn or partial write", head_hash=result.head_hash)
        if check_head:
            _check_head(result, self._read_head(), complete)
        return result


def _check_record(event: str, request_id: str, fields: dict) -> None:
    if event not in EVENTS:
        raise RequestError(f"unknown ledger event {event!r}", f"use one of: {', '.join(EVENTS)}")
    if not is_valid_request_id(request_id):
        raise RequestError(f"invalid request ID {request_id!r} for the ledger", "IDs are 1-64 of [A-Za-z0-9._-], starting with a letter or digit")
    clash = RESERVED_FIELDS.intersection(fields)
    if clash:
        raise RequestError(f"ledger fields {sorted(clash)} are reserved", "rename them")


def _entry_problem(position: int, line: bytes, prev: str) -> str | None:
    stored, actual = _line_digest(line)
    if stored is None:
        return f"entry {position} is not a ledger entry (no hash)"
    if stored != actual:
        return f"entry {position} was edited: its content does not match its hash"
    try:
        entry = json.loads(line)
    except ValueError:
        return f"entry {position} is not valid JSON"
    where = f"entry {position} ({entry.get('event')} of request {entry.get('request_id')})"
    if entry.get("seq") != position:
        return f"{where} carries sequence number {entry.get('seq')}: an entry before it was removed, or entries were reordered"
    if entry.get("prev") != prev:
        return f"{where} does not link to entry {position - 1}: that entry was altered or replaced"
    if entry.get("event") not in EVENTS:
        return f"{where} has an unknown event"
    return None


def _check_head(result: Verification, head: dict | None, complete: list[bytes]) -> None:
    n = len(complete)
    if head is None:
        if n:
            result.ok, result.first_bad = False, n - 1
            result.problem = "the ledger head is missing or unreadable, so removal of the last entries cannot be ruled out"
        return
    if head["seq"] >= n:
        result.ok, result.first_bad = False, n
        result.problem = f"the head records {head['seq'] + 1} entries but the ledger has {n}: entries were cut off the end"
        return
    if complete[head["seq"]][-66:-2].decode() != head["hash"]:
        result.ok, result.first_bad = False, head["seq"]
        result.problem = f"entry {head['seq']} does not match the hash recorded in the head: it was replaced"
        return
    if head["seq"] < n - 1:
        result.warnings.append(f"the head is {n - 1 - head['seq']} entries behind (a crash after an append); the next append brings it up to date")


def _read_last_line(fd: int, size: int) -> bytes:
    """The last complete line of the file (without its newline)."""
    if os.pread(fd, 1, size - 1) != b"\n":
        raise DataIntegrityError("the ledger ends with an incomplete entry (a torn write)", "run `forgetflow ledger verify` and restore the ledger from a backup")
    block, end = 4096, size - 1
    while True:
        start = max(0, end - block)
        chunk = os.pread(fd, end - start, start)
        cut = chunk.rfind(b"\n")
        if cut >= 0 or start == 0:
            return chunk[cut + 1 :]
        block *= 4


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
