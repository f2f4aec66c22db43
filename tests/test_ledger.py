"""The request ledger: hash chain, head anchor, tamper detection, atomic appends from two processes."""

from __future__ import annotations

import json
import multiprocessing as mp

import pytest

from forgetflow.errors import DataIntegrityError
from forgetflow.requests.ledger import EVENTS, GENESIS, Ledger, encode_entry, request_statuses
from forgetflow.requests.schema import RequestError


@pytest.fixture
def ledger(tmp_path):
    ledger = Ledger(tmp_path / "requests" / "ledger.jsonl")
    for i in range(6):
        ledger.append("received", f"req-{i}", kind="samples", targets=[i, i + 10])
    ledger.append("validated", "req-2", forget_set={"n_samples": 2})
    ledger.append("rejected", "req-3", reason="failed expectations: ids_exist")
    return ledger


def _lines(ledger: Ledger) -> list[bytes]:
    return ledger.path.read_bytes().splitlines(keepends=True)


def _write(ledger: Ledger, lines: list[bytes]) -> None:
    ledger.path.write_bytes(b"".join(lines))


def test_entries_chain_and_status(ledger):
    entries = ledger.entries()
    assert [e["seq"] for e in entries] == list(range(8))
    assert entries[0]["prev"] == GENESIS
    assert all(b["prev"] == a["hash"] for a, b in zip(entries, entries[1:]))
    assert ledger.verify().ok and ledger.verify().n_entries == 8
    status = ledger.status("req-2")
    assert status.state == "validated" and [e["event"] for e in status.history] == ["received", "validated"]
    assert ledger.status("req-3").last("rejected")["reason"].startswith("failed expectations")
    assert ledger.status("nope") is None
    assert list(request_statuses(entries)) == [f"req-{i}" for i in range(6)]


def test_entry_hash_covers_the_body(ledger):
    entry = ledger.entries()[3]
    body = {k: v for k, v in entry.items() if k != "hash"}
    line, digest = encode_entry(body)
    assert digest == entry["hash"] and line == _lines(ledger)[3]


def test_append_rejects_unknown_events_bad_ids_and_reserved_fields(tmp_path):
    ledger = Ledger(tmp_path / "ledger.jsonl")
    with pytest.raises(RequestError, match="unknown ledger event"):
        ledger.append("deleted", "r1")
    with pytest.raises(RequestError, match="invalid request ID"):
        ledger.append("received", "../etc/passwd")
    with pytest.raises(RequestError, match="reserved"):
        ledger.append("received", "r1", seq=5)
    assert not ledger.path.exists() or ledger.entries() == []
    assert set(EVENTS) == {"received", "rejected", "validated", "batched", "unlearned", "evaluated", "registered", "promoted", "erased", "failed",
                           "promoted-provisional", "verified", "verification-failed"}


def test_edit_is_detected_and_named(ledger):
    lines = _lines(ledger)
    lines[4] = lines[4].replace(b'"targets":[4,14]', b'"targets":[4,15]')
    _write(ledger, lines)
    result = ledger.verify()
    assert not result.ok and result.first_bad == 4 and "edited" in result.problem


def test_edit_with_recomputed_hash_breaks_the_link(ledger):
    lines = _lines(ledger)
    entry = json.loads(lines[2])
    entry["targets"] = [99]
    body = {k: v for k, v in entry.items() if k != "hash"}
    lines[2], _ = encode_entry(body)
    _write(ledger, lines)
    result = ledger.verify()
    assert not result.ok and result.first_bad == 3 and "does not link to entry 2" in result.problem


def test_deletion_in_the_middle_is_detected(ledger):
    lines = _lines(ledger)
    del lines[5]
    _write(ledger, lines)
    result = ledger.verify()
    assert not result.ok and result.first_bad == 5 and "removed" in result.problem


def test_reordering_is_detected(ledger):
    lines = _lines(ledger)
    lines[2], lines[3] = lines[3], lines[2]
    _write(ledger, lines)
    result = ledger.verify()
    assert not result.ok and result.first_bad == 2


def test_cutting_off_the_end_is_detected_by_the_head(ledger):
    _write(ledger, _lines(ledger)[:-2])
    result = ledger.verify()
    assert not result.ok and "cut off the end" in result.problem
    with pytest.raises(DataIntegrityError, match="cut off"):
        ledger.append("received", "req-9")


def test_replacing_the_last_entry_is_detected_by_the_head(ledger):
    lines = _lines(ledger)
    entry = json.loads(lines[-1])
    entry["reason"] = "all fine"
    lines[-1], _ = encode_entry({k: v for k, v in entry.items() if k != "hash"})
    _write(ledger, lines)
    result = ledger.verify()
    assert not result.ok and result.first_bad == 7 and "head" in result.problem


def test_emptied_ledger_is_detected(ledger):
    ledger.path.write_bytes(b"")
    assert not ledger.verify().ok
    with pytest.raises(DataIntegrityError, match="empty"):
        ledger.append("received", "req-9")


def test_torn_tail_is_reported_and_blocks_appends(ledger):
    with open(ledger.path, "ab") as handle:
        handle.write(b'{"at":"2026-01-01","event":"rece')
    result = ledger.verify()
    assert not result.ok and result.first_bad == 8 and "incomplete" in result.problem
    assert len(ledger.entries()) == 8  # readers never see half an entry


def test_missing_head_fails_verify_until_repaired(ledger):
    ledger.head_path.unlink()
    assert not ledger.verify().ok
    with pytest.raises(DataIntegrityError, match="head"):
        ledger.append("received", "req-9")
    assert ledger.repair_head().ok
    ledger.append("received", "req-9")
    assert ledger.verify().ok and ledger.verify().n_entries == 9


def test_repair_head_refuses_a_broken_chain(ledger):
    lines = _lines(ledger)
    del lines[1]
    _write(ledger, lines)
    with pytest.raises(DataIntegrityError, match="not repairing"):
        ledger.repair_head()


def test_head_behind_after_crash_is_a_warning_and_is_caught_up(ledger):
    # Simulate a crash after the fsynced append but before the head update.
    head = ledger.head_path.read_bytes()
    ledger.append("received", "req-7")
    ledger.head_path.write_bytes(head)
    result = ledger.verify()
    assert result.ok and result.warnings
    ledger.append("received", "req-8")
    result = ledger.verify()
    assert result.ok and not result.warnings and result.n_entries == 10


def test_entries_reads_incrementally_and_rereads_a_shrunk_file(ledger):
    assert len(ledger.entries()) == 8
    ledger.append("batched", "req-0", batch_id="b1")
    assert ledger.entries()[-1]["batch_id"] == "b1"
    _write(ledger, _lines(ledger)[:3])
    assert len(ledger.entries()) == 3


def test_numpy_fields_are_stored_as_json(tmp_path):
    np = pytest.importorskip("numpy")
    ledger = Ledger(tmp_path / "ledger.jsonl")
    entry = ledger.append("validated", "r1", sample_ids=np.arange(3, dtype=np.int64), n=np.int64(3))
    assert ledger.entries()[0]["sample_ids"] == [0, 1, 2] and entry["n"] == 3
    with pytest.raises(ValueError):
        ledger.append("validated", "r1", score=float("nan"))
    assert ledger.verify().ok and len(ledger.entries()) == 1


def _append_many(path: str, worker: int, count: int) -> None:
    ledger = Ledger(path)
    for i in range(count):
        ledger.append("received", f"w{worker}-{i}", worker=worker, i=i)


def test_two_processes_appending_at_once_lose_nothing(tmp_path):
    path = str(tmp_path / "ledger.jsonl")
    context = mp.get_context("spawn")
    workers = [context.Process(target=_append_many, args=(path, w, 300)) for w in (1, 2)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(60)
        assert p.exitcode == 0
    ledger = Ledger(path)
    result = ledger.verify()
    assert result.ok, result.problem
    entries = ledger.entries()
    assert len(entries) == 600
    assert {e["request_id"] for e in entries} == {f"w{w}-{i}" for w in (1, 2) for i in range(300)}
    # Each worker's own entries stay in its order; the two streams interleave.
    for w in (1, 2):
        assert [e["i"] for e in entries if e["worker"] == w] == list(range(300))


def test_append_many_is_one_atomic_group(ledger):
    stored = ledger.append_many([("batched", "req-0", {"batch_id": "b1"}), ("batched", "req-1", {"batch_id": "b1"})])
    assert [e["seq"] for e in stored] == [8, 9] and stored[1]["prev"] == stored[0]["hash"]
    assert ledger.entries()[-2:] == stored and ledger.verify().ok
    # One bad record refuses the whole group.
    with pytest.raises(RequestError):
        ledger.append_many([("batched", "req-2", {"batch_id": "b2"}), ("teleported", "req-3", {})])
    with pytest.raises(ValueError):
        ledger.append_many([("batched", "req-2", {"batch_id": "b2"}), ("batched", "req-3", {"x": float("inf")})])
    assert len(ledger.entries()) == 10 and ledger.append_many([]) == []
