"""The auditor's view without a pipeline run: Git anchors, descriptions, certificate rendering."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from forgetflow.requests.ledger import Ledger
from forgetflow.settings import load_settings


def test_git_anchor_catches_a_consistent_rewrite(workspace, monkeypatch):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    for key, value in {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}.items():
        monkeypatch.setenv(key, value)
    subprocess.run(["git", "init", "-q", str(workspace)], check=True)
    settings = load_settings(workspace)
    from forgetflow.anchors import _git_anchor, check_anchors

    ledger = Ledger.in_workspace(workspace)
    for n in range(3):
        ledger.append("received", f"r{n}", reason="test")
    entries = ledger.entries()
    assert _git_anchor(settings, {"entries": 3, "head": entries[-1]["hash"], "batch_id": "b1", "point": "registered", "model": "m"}) == "forgetflow-ledger/b1/registered"
    assert check_anchors(settings, ledger).ok
    # Rewrite consistently: drop request r1, re-hash the tail and the head.
    from forgetflow.requests.ledger import GENESIS, encode_entry

    prev, lines = GENESIS, []
    for seq, entry in enumerate(e for e in entries if e["request_id"] != "r1"):
        line, prev = encode_entry({k: v for k, v in entry.items() if k != "hash"} | {"seq": seq, "prev": prev})
        lines.append(line)
    ledger.path.write_bytes(b"".join(lines))
    ledger.head_path.unlink()
    forged = Ledger(ledger.path)
    forged.repair_head()
    assert forged.verify().ok
    check = check_anchors(settings, forged)
    assert not check.ok and "Git tag forgetflow-ledger/b1/registered" in check.problem


def test_descriptions_say_superseded_and_reference_plainly():
    from forgetflow.descriptions import version_description

    tags = {"forgetflow.role": "reference", "forgetflow.batch_id": "b2", "forgetflow.replaces_version": "3", "forgetflow.data_md5": "abc",
            "forgetflow.superseded_by_erasure": "b3", "forgetflow.weights": "quarantined", "forgetflow.gate_passed": "not gated (reference)"}
    text = version_description("4", tags, ["champion"], {"b2": {"requests": ["r1"], "erased": True, "verified": True, "erased_at": "2025-01-01T00:00:00+00:00", "outcome": "reference promoted: gate rejected the candidate"}})
    assert text.startswith("**SUPERSEDED by erasure of batch `b3`**") and "weights quarantined" in text
    assert "retrained from scratch" in text and "Promoted: the gate rejected" in text and "FAILED" not in text
    assert "forgetflow audit certificate r1" in text


def test_certificate_page_escapes_hostile_strings():
    from forgetflow.certificate_html import render_certificate

    hostile = '<script>alert(1)</script>[/bold]"'
    page = render_certificate({"request": {"request_id": "r1", "reason": hostile, "requested_by": hostile}, "ledger": {"entries": [{"seq": 0, "event": "frobnicated", "reason": hostile, "hash": "0" * 64}]}})
    assert "<script>alert" not in page and "&lt;script&gt;" in page and "frobnicated" in page  # an unknown event renders as it is


def test_verify_certificate_refuses_what_is_not_a_certificate(tmp_path):
    from forgetflow.certificate import load_certificate
    from forgetflow.errors import ForgetflowError

    for name, content in (("list.json", "[1, 2]"), ("other.json", json.dumps({"format": "x"})), ("bad.json", "{not json")):
        (tmp_path / name).write_text(content)
        with pytest.raises(ForgetflowError):
            load_certificate(tmp_path / name)
    with pytest.raises(ForgetflowError, match="no certificate file"):
        load_certificate(tmp_path / "missing.json")
