"""The ledger head, anchored outside the ledger file.

The ledger's hash chain catches an edited byte, but whoever can write the file can also re-hash a
consistent rewrite of its tail and its `.head`. So at each batch's registration (and again when
the batch is erased) the head - entry count and hash of the last entry - is written where a
rewrite of the ledger file does not reach:

- an MLflow tag `forgetflow.ledger_head` = `<entries>:<hash>` on every model version and run the
  batch created (and `forgetflow.ledger_head_erased` after its erasure);
- a Git tag `forgetflow-ledger/<batch>/<point>` on a blob holding the anchor, when the workspace is
  a Git repository (signed when Git is set up to sign tags: `tag.gpgSign`);
- optionally `audit.anchor_command` in params.yaml: a shell command that receives the anchor as
  JSON on stdin (e.g. `curl` to a notary or an append-only log bucket).

`check_anchors` compares the ledger file with every anchor it can read: an anchor of N entries
must match the hash of entry N-1, so a rewrite of anything before an anchor is named by it.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field

from forgetflow.requests.ledger import Ledger
from forgetflow.settings import Settings
from forgetflow.tracking import TAG_PREFIX

HEAD_TAGS = {"registered": f"{TAG_PREFIX}ledger_head", "erased": f"{TAG_PREFIX}ledger_head_erased"}
GIT_TAG_PREFIX = "forgetflow-ledger"


@dataclass
class Anchor:
    where: str  # "MLflow tag forgetflow.ledger_head of v3", "Git tag ..."
    entries: int
    head: str


@dataclass
class AnchorCheck:
    ok: bool
    checked: int
    problem: str | None = None
    notes: list[str] = field(default_factory=list)


def ledger_head(ledger: Ledger) -> tuple[int, str | None]:
    """(number of entries, hash of the last one) as the file is now."""
    entries = ledger.entries()
    return len(entries), (entries[-1]["hash"] if entries else None)


def anchor_batch(settings: Settings, batch_id: str, point: str, *, versions: list[str], run_ids: list[str]) -> dict:
    """Write the current head to every anchor; returns {"entries", "head", "git_tag"?, "external"?}."""
    from forgetflow.audit_params import audit_params
    from forgetflow.deletion.registry import _client
    from forgetflow.requests.intake import open_ledger

    n, head = ledger_head(open_ledger(settings))
    if head is None:
        return {}
    value = f"{n}:{head}"
    client = _client(settings)
    tag = HEAD_TAGS[point]
    for version in versions:
        client.set_model_version_tag(settings.registered_model_name, str(version), tag, value)
    for run_id in run_ids:
        client.set_tag(run_id, tag, value)
    client.set_registered_model_tag(settings.registered_model_name, f"{TAG_PREFIX}ledger_head_latest", value)
    record = {"entries": n, "head": head, "batch_id": batch_id, "point": point, "model": settings.registered_model_name}
    params = audit_params(settings)
    if params.git_anchor == "auto":
        record["git_tag"] = _git_anchor(settings, record)
    if params.anchor_command:
        record["external"] = _external_anchor(params.anchor_command, record)
    return record


def _git(settings: Settings, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(settings.workspace), *args], input=stdin, capture_output=True, text=True, timeout=20)


def _in_git_repository(settings: Settings) -> bool:
    try:
        return _git(settings, "rev-parse", "--git-dir").returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _git_anchor(settings: Settings, record: dict) -> str | None:
    """An annotated (signed, where Git signs tags) tag on a blob holding the anchor: no commit,
    no branch and no working-tree file change; `git push --tags` sends it off the machine."""
    if not _in_git_repository(settings):
        return None
    blob = _git(settings, "hash-object", "-w", "--stdin", stdin=json.dumps(record, sort_keys=True))
    if blob.returncode != 0:
        return None
    name = f"{GIT_TAG_PREFIX}/{record['batch_id']}/{record['point']}"
    sign = _git(settings, "config", "--bool", "tag.gpgSign").stdout.strip() == "true"
    message = f"forgetflow ledger head: {record['entries']} entries, head {record['head']}"
    tag = ["tag", "-f", "-s" if sign else "-a", name, blob.stdout.strip(), "-m", message]
    made = _git(settings, *tag)
    if made.returncode != 0 and not sign:  # no Git identity configured: tag as forgetflow
        made = _git(settings, "-c", "user.name=forgetflow", "-c", "user.email=forgetflow@localhost", *tag)
    return name if made.returncode == 0 else None


def _external_anchor(command: str, record: dict) -> str:
    try:
        done = subprocess.run(command, shell=True, input=json.dumps(record, sort_keys=True), capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"failed: {exc}"
    return "sent" if done.returncode == 0 else f"failed (exit {done.returncode}): {done.stderr.strip()[:200]}"


def read_anchors(settings: Settings) -> tuple[list[Anchor], list[str]]:
    """Every anchor that can be read, and notes on the ones that cannot (e.g. no MLflow store)."""
    anchors, notes = [], []
    try:
        anchors += _mlflow_anchors(settings)
    except Exception as exc:  # an unreachable store must not hide the file check's own verdict
        notes.append(f"MLflow anchors not checked: {getattr(exc, 'message', exc)}")
    if _in_git_repository(settings):
        anchors += _git_anchors(settings)
    return anchors, notes


def _mlflow_anchors(settings: Settings) -> list[Anchor]:
    from pathlib import Path

    uri = settings.tracking_uri
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return []  # no registry yet: nothing anchored
    from forgetflow.deletion.registry import _client

    client = _client(settings)
    anchors = []
    for mv in client.search_model_versions(f"name='{settings.registered_model_name}'"):
        for tag in HEAD_TAGS.values():
            if tag in mv.tags:
                anchors.append(_parse(f"MLflow tag {tag} of version {mv.version}", mv.tags[tag]))
        run_tags = client.get_run(mv.run_id).data.tags if mv.run_id else {}
        for tag in HEAD_TAGS.values():
            if tag in run_tags:
                anchors.append(_parse(f"MLflow tag {tag} of run {mv.run_id} (version {mv.version})", run_tags[tag]))
    return anchors


def _git_anchors(settings: Settings) -> list[Anchor]:
    listed = _git(settings, "for-each-ref", "--format=%(refname:short) %(objectname)", f"refs/tags/{GIT_TAG_PREFIX}/")
    anchors = []
    for line in listed.stdout.splitlines():
        name, _ = line.split(" ", 1)
        body = _git(settings, "cat-file", "-p", f"{name}^{{}}")
        try:
            record = json.loads(body.stdout)
            anchors.append(Anchor(f"Git tag {name}", int(record["entries"]), str(record["head"])))
        except (ValueError, KeyError, TypeError):
            anchors.append(Anchor(f"Git tag {name}", -1, "unreadable"))
    return anchors


def _parse(where: str, value: str) -> Anchor:
    count, _, head = str(value).partition(":")
    try:
        return Anchor(where, int(count), head)
    except ValueError:
        return Anchor(where, -1, "unreadable")


def check_anchors(settings: Settings, ledger: Ledger) -> AnchorCheck:
    """Each anchor of N entries must match the hash of the ledger's entry N-1. The first anchor
    (in ledger order) that disagrees is named: everything from there on was rewritten."""
    anchors, notes = read_anchors(settings)
    entries = ledger.entries()
    for anchor in sorted(anchors, key=lambda a: (a.entries, a.where)):
        if anchor.entries < 1:
            return AnchorCheck(False, len(anchors), f"{anchor.where} cannot be read: the anchor was altered", notes)
        if anchor.entries > len(entries):
            return AnchorCheck(False, len(anchors), f"{anchor.where} records {anchor.entries} entries but the ledger has {len(entries)}: entries were removed", notes)
        actual = entries[anchor.entries - 1].get("hash")
        if actual != anchor.head:
            return AnchorCheck(
                False, len(anchors),
                f"{anchor.where} records head {anchor.head[:16]}… after {anchor.entries} entries, but the ledger's entry {anchor.entries - 1} has hash {str(actual)[:16]}…: the ledger was rewritten at or before entry {anchor.entries - 1}",
                notes,
            )
    return AnchorCheck(True, len(anchors), None, notes)
