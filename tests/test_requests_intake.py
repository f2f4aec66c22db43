"""Intake: the Python API, idempotency and duplicates, the inbox folder, pseudonymised subjects, the CLI."""

from __future__ import annotations

import json
import multiprocessing as mp
import stat
import tempfile
from pathlib import Path

import pytest
import typer
from hypothesis import HealthCheck, given, settings as hyp_settings, strategies as st
from typer.testing import CliRunner

from forgetflow.cli.requests import register
from forgetflow.requests.intake import inbox_dir, open_ledger, process_inbox, requests_dir, submit
from forgetflow.requests.pseudonyms import config_path, subject_token, workspace_salt
from forgetflow.requests.schema import ALLOWED_GOALS, RequestError
from forgetflow.settings import load_settings


def _request(**overrides):
    data = {"kind": "samples", "ids": [1, 2, 3], "reason": "GDPR Art. 17", "requested_by": "dpo"}
    data.update(overrides)
    return data


@pytest.fixture
def settings(tmp_path):
    return load_settings(tmp_path)


def test_submit_records_one_received_entry(settings):
    result = submit(settings, _request(request_id="r1"))
    assert result.outcome == "recorded" and result.request_id == "r1"
    ledger = open_ledger(settings)
    (entry,) = ledger.entries()
    assert entry["event"] == "received" and entry["targets"] == [1, 2, 3] and entry["n_targets"] == 3
    assert entry["source"] == "api" and len(entry["fingerprint"]) == 64
    assert ledger.path == settings.workspace / "data" / "requests" / "ledger.jsonl"


def test_same_id_same_content_is_idempotent(settings):
    submit(settings, _request(request_id="r1"))
    again = submit(settings, _request(request_id="r1", ids=[3, 2, 1, 1], reason="resent"))
    assert again.outcome == "already_recorded"
    assert len(open_ledger(settings).entries()) == 1


def test_same_id_different_content_is_refused(settings):
    submit(settings, _request(request_id="r1"))
    with pytest.raises(RequestError, match="already used"):
        submit(settings, _request(request_id="r1", ids=[4]))
    assert len(open_ledger(settings).entries()) == 1


def test_same_content_new_id_is_flagged_as_duplicate(settings):
    submit(settings, _request(request_id="r1"))
    dup = submit(settings, _request(request_id="r2", ids=[2, 3, 1]))
    assert dup.outcome == "duplicate" and dup.duplicate_of == "r1"
    status = open_ledger(settings).status("r2")
    assert [e["event"] for e in status.history] == ["received", "rejected"]
    assert status.history[-1]["duplicate_of"] == "r1" and "duplicate of request r1" in status.history[-1]["reason"]
    # A different goal on the same samples is different content.
    assert submit(settings, _request(request_id="r3", goal="misclassify")).outcome == "recorded"


def test_content_of_a_rejected_request_may_be_submitted_again(settings):
    submit(settings, _request(request_id="r1"))
    open_ledger(settings).append("rejected", "r1", reason="failed expectations: ids_exist")
    assert submit(settings, _request(request_id="r2")).outcome == "recorded"


def test_subject_ids_are_stored_as_salted_hashes(settings):
    submit(settings, _request(kind="subjects", ids=["alice@example.org", "subj-000042"], request_id="s1"))
    text = open_ledger(settings).path.read_text()
    assert "alice@example.org" not in text and "subj-000042" not in text
    salt = workspace_salt(settings.state_dir)
    assert open_ledger(settings).entries()[0]["targets"] == [subject_token(salt, "alice@example.org"), subject_token(salt, "subj-000042")]
    path = config_path(settings.state_dir)
    assert path.parent == settings.workspace / ".forgetflow"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # The salt is stable, and differs between workspaces.
    assert workspace_salt(settings.state_dir) == salt
    with tempfile.TemporaryDirectory() as other:
        assert workspace_salt(Path(other)) != salt


def test_sample_and_class_ids_are_stored_as_given(settings):
    submit(settings, _request(kind="classes", ids=["cat", 3], request_id="c1"))
    assert open_ledger(settings).entries()[0]["targets"] == ["cat", 3]


def _submit_many(workspace: str, prefix: str, count: int) -> None:
    for i in range(count):
        submit(load_settings(workspace), _request(request_id=f"{prefix}{i}", ids=[i, 1000 + i]))


def test_two_processes_submitting_at_once(settings):
    context = mp.get_context("spawn")
    # Both submit the same 40 shared requests and 40 of their own.
    jobs = [context.Process(target=_submit_many, args=(str(settings.workspace), "shared-", 40)) for _ in range(2)]
    jobs += [context.Process(target=_submit_many, args=(str(settings.workspace), f"own{w}-", 40)) for w in range(2)]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join(120)
        assert job.exitcode == 0
    ledger = open_ledger(settings)
    assert ledger.verify().ok
    received = [e["request_id"] for e in ledger.entries() if e["event"] == "received"]
    assert len(received) == len(set(received))  # the shared IDs were recorded once
    assert set(received) == {f"shared-{i}" for i in range(40)} | {f"own{w}-{i}" for w in range(2) for i in range(40)}
    # own0-i and own1-i ask for the same samples: whichever came second is flagged as a duplicate.
    for i in range(40):
        states = sorted(ledger.status(f"{p}{i}").state for p in ("shared-", "own0-", "own1-"))
        assert states == ["received", "rejected", "rejected"]


# Inbox -----------------------------------------------------------------------------------------
def _drop(settings, name: str, content) -> Path:
    inbox = inbox_dir(settings)
    inbox.mkdir(parents=True, exist_ok=True)
    path = inbox / name
    path.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    return path


def test_inbox_records_valid_files_and_rejects_bad_ones_with_a_reason(settings):
    _drop(settings, "a.json", _request(request_id="in-1"))
    _drop(settings, "b.json", b"{not json")
    _drop(settings, "c.json", _request(goal="relabel"))
    _drop(settings, "d.json", _request(request_id="in-4"))  # same content as a.json
    _drop(settings, ".e.json", _request(request_id="in-5"))  # still being written: skipped
    _drop(settings, "f.json.tmp", _request(request_id="in-6"))
    _drop(settings, "g.txt", _request(request_id="in-7"))
    report = process_inbox(settings)

    assert [name for name, _ in report.processed] == ["a.json", "d.json"]
    assert dict(report.processed)["d.json"].outcome == "duplicate"
    assert sorted(name for name, _ in report.rejected) == ["b.json", "c.json", "g.txt"]
    folder = requests_dir(settings)
    # Processed files are prefixed with their request ID so erasure can purge them; a duplicate is
    # rejected as it is recorded, so no clear-text copy of it is kept.
    assert sorted(p.name.split("--", 1)[1] for p in (folder / "processed").iterdir()) == ["a.json"]
    assert "not valid JSON" in (folder / "rejected" / "b.json.reason.txt").read_text()
    assert "needs new_labels" in (folder / "rejected" / "c.json.reason.txt").read_text()
    assert sorted(p.name for p in inbox_dir(settings).iterdir()) == [".e.json", "f.json.tmp"]
    assert [e["request_id"] for e in open_ledger(settings).entries()] == ["in-1", "in-4", "in-4"]
    assert open_ledger(settings).entries()[0]["source"] == "inbox"


def test_inbox_is_idempotent_and_keeps_name_clashes(settings):
    _drop(settings, "a.json", _request(request_id="in-1"))
    process_inbox(settings)
    _drop(settings, "a.json", _request(request_id="in-1"))  # dropped again (e.g. after a crash)
    report = process_inbox(settings)
    assert report.processed[0][1].outcome == "already_recorded"
    assert sorted(p.name for p in (requests_dir(settings) / "processed").iterdir()) == ["in-1--a-1.json", "in-1--a.json"]
    assert len(open_ledger(settings).entries()) == 1


def test_empty_or_missing_inbox(settings):
    report = process_inbox(settings)
    assert not report.processed and not report.rejected and inbox_dir(settings).is_dir()


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
_fields = {
    "request_id": st.one_of(st.text(max_size=70), st.uuids().map(str), _json_values),
    "kind": st.one_of(st.sampled_from(["samples", "subjects", "classes", "people"]), _json_values),
    "ids": st.one_of(st.lists(st.integers(-3, 50) | st.text(max_size=8), max_size=6), _json_values),
    "goal": st.one_of(st.sampled_from(["forget", "misclassify", "relabel"]), _json_values),
    "new_labels": st.one_of(st.lists(st.integers(-1, 12) | st.text(max_size=4), max_size=6), _json_values),
    "reason": st.one_of(st.text(max_size=30), _json_values),
    "requested_by": st.one_of(st.text(max_size=30), _json_values),
    "received_at": st.one_of(st.datetimes().map(lambda d: d.isoformat()), st.text(max_size=30), _json_values),
    "zzz": _json_values,
}
_random_dict = st.fixed_dictionaries({}, optional=_fields)


@st.composite
def _valid_request(draw):
    kind = draw(st.sampled_from(sorted(ALLOWED_GOALS)))
    goal = draw(st.sampled_from(ALLOWED_GOALS[kind]))
    element = {"samples": st.integers(0, 2000), "subjects": st.text(min_size=1, max_size=12), "classes": st.integers(0, 9) | st.sampled_from(["0", "7", "cat"])}[kind]
    ids = draw(st.lists(element, min_size=1, max_size=6))
    data = {"kind": kind, "goal": goal, "ids": ids, "reason": draw(st.text(min_size=1, max_size=20).filter(str.strip)), "requested_by": draw(st.from_regex(r"[a-z]{1,12}", fullmatch=True))}
    if goal == "relabel":
        data["new_labels"] = draw(st.lists(st.integers(0, 9), min_size=len(ids), max_size=len(ids)))
    if draw(st.booleans()):
        data["request_id"] = draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True))
    return data


@st.composite
def _mutated_request(draw):
    """A valid request with one field dropped, replaced by a random JSON value, or one extra field."""
    data = draw(_valid_request())
    action = draw(st.sampled_from(["drop", "replace", "add"]))
    key = draw(st.sampled_from(sorted(data)))
    if action == "drop":
        data.pop(key)
    elif action == "replace":
        data[key] = draw(_fields.get(key, _json_values))
    else:
        data[draw(st.text(max_size=8))] = draw(_json_values)
    return data


_request_like = st.one_of(_random_dict, _valid_request(), _mutated_request())
_file_bytes = st.one_of(
    st.binary(max_size=200),
    _json_values.map(lambda v: json.dumps(v).encode()),
    _request_like.map(lambda v: json.dumps(v).encode()),
    _request_like.map(lambda v: json.dumps(v).encode()[: len(json.dumps(v)) // 2]),  # truncated file
    st.just(b"[" * 5000 + b"]" * 5000),  # deeper than the JSON parser's recursion limit
    st.just(b'{"kind": "samples", "ids": [NaN], "reason": "x", "requested_by": "y"}'),
)


@hyp_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(content=_file_bytes)
def test_random_inbox_files_never_crash_intake_or_write_partial_entries(content):
    with tempfile.TemporaryDirectory() as workspace:
        settings = load_settings(workspace)
        ledger = open_ledger(settings)
        ledger.append("received", "existing", kind="samples", targets=[1], fingerprint="f")
        before = ledger.path.read_bytes()
        _drop(settings, "req.json", content)
        report = process_inbox(settings)  # must not raise
        assert len(report.processed) + len(report.rejected) == 1
        assert not list(inbox_dir(settings).iterdir())
        after = ledger.path.read_bytes()
        assert after.startswith(before) and after.endswith(b"\n")
        result = ledger.verify()
        assert result.ok, result.problem
        new = ledger.entries()[1:]
        if report.rejected:
            assert new == [] and (requests_dir(settings) / "rejected" / "req.json.reason.txt").is_file()
        else:
            assert [e["event"] for e in new][:1] == ["received"] and len(new) <= 2


@hyp_settings(max_examples=150, deadline=None)
@given(data=_request_like)
def test_random_request_dicts_give_a_request_error_or_one_entry(data):
    with tempfile.TemporaryDirectory() as workspace:
        settings = load_settings(workspace)
        try:
            submit(settings, data)
        except RequestError:
            assert open_ledger(settings).entries() == []
        else:
            (entry,) = open_ledger(settings).entries()
            assert entry["event"] == "received" and open_ledger(settings).verify().ok


# CLI ---------------------------------------------------------------------------------------------
@pytest.fixture
def cli():
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args])


def test_cli_submit_list_show_inbox_and_verify(cli, settings, tmp_path):
    ws = settings.workspace
    out = cli("request", "submit", "-k", "samples", "--ids", "5, 6,7", "--reason", "gdpr", "--requested-by", "dpo", "--request-id", "cli-1", "-w", ws)
    assert out.exit_code == 0 and "recorded" in out.output
    id_file = tmp_path / "ids.txt"
    id_file.write_text("# subjects of ticket 17\nsubj-000001\nsubj-000002, subj-000003\n")
    out = cli("request", "submit", "-k", "subjects", "--from-file", id_file, "--reason", "gdpr", "--requested-by", "dpo", "--request-id", "cli-2", "-w", ws)
    assert out.exit_code == 0
    assert open_ledger(settings).status("cli-2").received["n_targets"] == 3
    out = cli("request", "submit", "-k", "samples", "--ids", "7,6,5", "--reason", "again", "--requested-by", "dpo", "-w", ws)
    assert "duplicates request cli-1" in out.output
    out = cli("request", "submit", "-k", "samples", "--goal", "relabel", "--ids", "5", "--new-labels", "3", "--reason", "r", "--requested-by", "dpo", "--request-id", "cli-3", "-w", ws)
    assert out.exit_code == 0 and open_ledger(settings).status("cli-3").received["new_labels"] == [3]
    out = cli("request", "submit", "-k", "classes", "--goal", "relabel", "--ids", "1", "--reason", "r", "--requested-by", "dpo", "-w", ws)
    assert isinstance(out.exception, RequestError)

    _drop(settings, "x.json", _request(request_id="inbox-1", ids=[40]))
    out = cli("request", "inbox", "-w", ws)
    assert out.exit_code == 0 and "processed" in out.output and "inbox-1" in out.output

    out = cli("request", "list", "-w", ws)
    assert out.exit_code == 0 and all(r in out.output for r in ("cli-1", "cli-2", "inbox-1"))
    out = cli("request", "list", "--state", "rejected", "-w", ws)
    assert "cli-1" not in out.output
    out = cli("request", "show", "cli-1", "-w", ws)
    assert out.exit_code == 0 and "received" in out.output and "gdpr" in out.output
    assert isinstance(cli("request", "show", "nope", "-w", ws).exception, RequestError)

    out = cli("ledger", "verify", "-w", ws)
    assert out.exit_code == 0 and "intact" in out.output
    ledger = open_ledger(settings)
    ledger.path.write_bytes(ledger.path.read_bytes().replace(b'"targets":[5,6,7]', b'"targets":[5,6,8]'))
    out = cli("ledger", "verify", "-w", ws)
    assert out.exit_code == 1 and "entry 0" in out.output


def test_cli_module_imports_nothing_heavy():
    import subprocess
    import sys

    code = "import sys, forgetflow.cli.requests; print(sorted(m for m in ('great_expectations', 'torch', 'mlflow', 'prefect', 'dvc', 'pandas') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_a_lost_salt_is_never_silently_replaced(settings):
    from forgetflow.errors import WorkspaceError

    submit(settings, _request(kind="subjects", ids=["subj-1"], request_id="s1"))
    config_path(settings.state_dir).unlink()
    with pytest.raises(WorkspaceError, match="salt"):
        submit(settings, _request(kind="subjects", ids=["subj-2"], request_id="s2"))
    with pytest.raises(WorkspaceError, match="salt"):
        workspace_salt(settings.state_dir, create=False)
    assert len(open_ledger(settings).entries()) == 1


def test_cli_ledger_repair_head(cli, settings):
    submit(settings, _request(request_id="r1"))
    open_ledger(settings).head_path.unlink()
    out = cli("ledger", "verify", "-w", settings.workspace)
    assert out.exit_code == 1 and "head" in out.output
    out = cli("ledger", "verify", "--repair-head", "-w", settings.workspace)
    assert out.exit_code == 0 and "intact" in out.output
