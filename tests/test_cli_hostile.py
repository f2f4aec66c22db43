"""The CLI under hostile input (issue 23): stored text is printed as text, never as Rich markup;
bad input is one message and exit status 2, never a traceback; requests are parsed strictly
(duplicate keys, booleans, timestamps); a workspace that does not exist is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from forgetflow.cli import app
from forgetflow.requests.intake import inbox_dir, open_ledger, process_inbox, purge_closed, requests_dir, submit
from forgetflow.settings import load_settings

from conftest import make_workspace

BIN = Path(sys.executable).parent
HOSTILE = "[/bold]mallory"


def forgetflow(*args: str) -> subprocess.CompletedProcess:
    """The installed command, as a user runs it (errors go through `main`: message, hint, exit 2)."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    return subprocess.run([str(BIN / "forgetflow"), *args], env=env, capture_output=True, text=True, timeout=120)


def invoke(*args: str):
    result = CliRunner().invoke(app, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def assert_clean_failure(run: subprocess.CompletedProcess, *expected: str) -> None:
    assert run.returncode == 2, run.stdout + run.stderr
    assert "Traceback" not in run.stderr and run.stderr.startswith("error: "), run.stderr
    message = run.stderr.splitlines()[0]
    for text in expected:
        assert text in message, message


@pytest.fixture
def ws(tmp_path) -> Path:
    return make_workspace(tmp_path / "ws")


def _request(**fields) -> dict:
    return {"kind": "samples", "ids": [1, 2], "reason": "GDPR Art. 17", "requested_by": "dpo@example.org", **fields}


def test_markup_in_stored_text_prints_literally(ws):
    code, out = invoke("request", "submit", "--kind", "samples", "--ids", "3,4", "--reason", "[red]why[/", "--requested-by", HOSTILE, "--request-id", "r1", "-w", str(ws))
    assert code == 0, out
    code, out = invoke("request", "list", "-w", str(ws))
    assert code == 0 and "[/bold]" in out, out
    code, out = invoke("request", "show", "r1", "-w", str(ws))
    assert code == 0 and f"requested_by: {HOSTILE}" in out and "reason: [red]why[/" in out, out


def test_markup_in_an_inbox_file_and_in_an_error_prints_literally(ws):
    inbox_dir(load_settings(ws)).mkdir(parents=True)
    (inbox_dir(load_settings(ws)) / "odd.json").write_text(json.dumps({**_request(), "[/oops]": 1}))
    code, out = invoke("request", "inbox", "-w", str(ws))
    assert code == 0 and "[/oops]" in out, out
    assert_clean_failure(forgetflow("request", "show", "[/x]", "-w", str(ws)), "no request [/x]")


def test_a_file_that_is_not_utf8_is_one_message(ws, tmp_path):
    ids = tmp_path / "ids.txt"
    ids.write_bytes(b"\xff\xfe1,\x002\x00")
    assert_clean_failure(forgetflow("request", "submit", "-k", "samples", "--from-file", str(ids), "--reason", "r", "--requested-by", "x", "-w", str(ws)), "is not UTF-8")


def test_a_5000_digit_id_is_one_message(ws):
    run = forgetflow("request", "submit", "-k", "samples", "--ids", "9" * 5000, "--reason", "r", "--requested-by", "x", "-w", str(ws))
    assert_clean_failure(run, "has 5000 digits")
    assert "9" * 100 not in run.stderr  # not echoed whole


def test_an_unknown_request_is_one_message_before_any_server_starts(ws):
    invoke("request", "submit", "-k", "samples", "--ids", "1", "--reason", "r", "--requested-by", "x", "-w", str(ws))
    run = forgetflow("process", "-r", "UNKNOWN", "-w", str(ws))
    assert_clean_failure(run, "unknown request IDs: UNKNOWN")
    assert not (ws / ".forgetflow" / "prefect" / "servers").exists()


@pytest.mark.parametrize("args", [("status",), ("request", "list"), ("request", "submit", "-k", "samples", "--ids", "1", "--reason", "r", "--requested-by", "x"), ("process",)])
def test_a_workspace_that_does_not_exist_is_refused(tmp_path, args):
    missing = tmp_path / "typo"
    assert_clean_failure(forgetflow(*args, "-w", str(missing)), f"workspace {missing} does not exist")
    assert not missing.exists()


def _inbox_reason(ws: Path, name: str, content: bytes | str) -> str:
    settings = load_settings(ws)
    inbox_dir(settings).mkdir(parents=True, exist_ok=True)
    (inbox_dir(settings) / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    report = process_inbox(settings)
    assert not report.processed and len(report.rejected) == 1
    return report.rejected[0][1]


def test_duplicate_json_keys_are_rejected(ws):
    # Python's json keeps the last value: this would have become a class request.
    content = '{"kind": "samples", "ids": [1], "reason": "r", "requested_by": "x", "kind": "classes"}'
    assert "duplicate key" in _inbox_reason(ws, "dup.json", content)
    assert open_ledger(load_settings(ws)).entries() == []


@pytest.mark.parametrize(
    "fields,named",
    [
        ({"urgent": "yes"}, "urgent"),
        ({"urgent": 1}, "urgent"),
        ({"received_at": 1767225600}, "received_at"),  # a number is not a timestamp
        ({"received_at": "2026-03-01"}, "received_at"),  # a date without a time and zone
        ({"received_at": "2020-01-01T00:00:00Z"}, "more than 90 days ago"),
        ({"received_at": (datetime.now(timezone.utc) + timedelta(days=2)).isoformat()}, "future"),
    ],
)
def test_booleans_and_timestamps_are_strictly_typed(ws, fields, named):
    assert named in _inbox_reason(ws, "r.json", json.dumps(_request(**fields)))


def test_a_recent_timestamp_with_a_zone_is_kept(ws):
    at = (datetime.now(timezone.utc) - timedelta(days=3)).replace(microsecond=0)
    result = submit(load_settings(ws), _request(received_at=at.isoformat().replace("+00:00", "Z"), urgent=True), announce="none")
    received = open_ledger(load_settings(ws)).status(result.request_id).received
    assert received["received_at"] == at.isoformat() and received["urgent"] is True


def test_processed_copies_of_rejected_requests_are_purged(ws):
    settings = load_settings(ws)
    processed = requests_dir(settings) / "processed"
    processed.mkdir(parents=True)
    submit(settings, _request(request_id="kept"), announce="none")
    ledger = open_ledger(settings)
    ledger.append("rejected", "kept", reason="failed validation")  # e.g. rejected by a batch
    (processed / "kept--subject.json").write_text('{"ids": ["alice"]}')
    assert purge_closed(settings) == ["data/requests/processed/kept--subject.json"]
    assert not list(processed.iterdir())
