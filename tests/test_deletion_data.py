"""Deletion data versioning, erasure from every copy, and the erasure proof (real DVC)."""

from __future__ import annotations

import multiprocessing as mp
import shutil

import numpy as np
import pytest

from forgetflow.data.importer import dvc_workspace, import_dataset
from forgetflow.data.store import DatasetVersion
from forgetflow.deletion.data_version import apply_deletion
from forgetflow.deletion.erasure import erase, verify_erasure
from forgetflow.deletion.lock import WorkspaceBusyError, workspace_lock
from forgetflow.deletion.objects import materialise_version, object_stores
from forgetflow.errors import DataIntegrityError
from forgetflow.settings import load_settings
from forgetflow.workspace import init_workspace

from conftest import make_workspace


@pytest.fixture
def ws(tmp_path):
    settings = load_settings(make_workspace(tmp_path / "ws"))
    import_dataset(settings, init_workspace(settings), "digits")
    return settings


def forgotten_hashes(settings, md5, ids):
    old = materialise_version(settings, "digits", md5)
    return set(old.manifest.set_index("sample_id").loc[ids, "content_hash"])


def test_deletion_creates_a_new_version_and_reads_the_forget_set_from_the_old_one(ws):
    root = ws.data_dir / "digits"
    before = dvc_workspace(ws).md5(root)
    ids = [5, 6, 700]
    result = apply_deletion(ws, "digits", ids, batch_id="batch-1")
    assert result.md5_before == before and result.md5_after == dvc_workspace(ws).md5(root) != before
    assert result.removed == 3 and result.touched_shards == ["shard-00000.npy", "shard-00002.npy"]
    assert not set(ids) & set(DatasetVersion(root).manifest.sample_id)
    old = materialise_version(ws, "digits", before)
    forget = old.load(sample_ids=ids)
    assert forget.sample_ids.tolist() == ids and forget.images.shape == (3, 8, 8, 1)
    # Re-running the same batch after a crash recognises it instead of failing or applying it twice.
    again = apply_deletion(ws, "digits", ids, batch_id="batch-1", md5_before=before)
    assert again.md5_after == result.md5_after and again.touched_shards == result.touched_shards


def test_unknown_ids_are_refused_without_writing(ws):
    root = ws.data_dir / "digits"
    before = dvc_workspace(ws).md5(root)
    with pytest.raises(DataIntegrityError, match="not in dataset"):
        apply_deletion(ws, "digits", [1, 99999], batch_id="b")
    assert dvc_workspace(ws).md5(root) == before and len(DatasetVersion(root).manifest) == 1797


def test_erasure_removes_every_copy_and_verify_proves_it(ws):
    root = ws.data_dir / "digits"
    first = apply_deletion(ws, "digits", [1, 2], batch_id="b1")
    ids = [10, 600, 1500]
    hashes = forgotten_hashes(ws, first.md5_after, ids)
    second = apply_deletion(ws, "digits", ids, batch_id="b2")
    check = verify_erasure(ws, "digits", hashes, set(ids))
    assert not check.ok  # before erasure the old objects (both older versions) still hold the samples
    record = erase(ws, "digits", hashes, recorded_objects=second.objects_to_erase, old_versions=[second.md5_before])
    assert record.objects_removed["cache"] and record.objects_removed["remote"]
    check = verify_erasure(ws, "digits", hashes, set(ids))
    assert check.ok, check.problems
    assert check.objects_scanned > 0
    # The current version is intact and still loads with hash checks.
    assert len(DatasetVersion(root).load().labels) == 1797 - 5


def test_verify_fails_when_a_forgotten_object_is_planted_back(ws):
    root = ws.data_dir / "digits"
    md5 = dvc_workspace(ws).md5(root)
    shard0 = (root / "shards" / "shard-00000.npy").read_bytes()
    ids = [3]
    hashes = forgotten_hashes(ws, md5, ids)
    result = apply_deletion(ws, "digits", ids, batch_id="b")
    erase(ws, "digits", hashes, recorded_objects=result.objects_to_erase, old_versions=[md5])
    assert verify_erasure(ws, "digits", hashes, set(ids)).ok
    remote = object_stores(ws)[1]
    planted = remote.path("0" * 32)
    remote.fs.makedirs(planted.rsplit("/", 1)[0], exist_ok=True)
    with open(planted, "wb") as handle:
        handle.write(shard0)
    check = verify_erasure(ws, "digits", hashes, set(ids))
    assert not check.ok and any("remote object" in p for p in check.problems)


def _hold_lock(workspace, started, release):
    settings = load_settings(workspace)
    with workspace_lock(settings, purpose="test holder"):
        started.set()
        release.wait(30)


def test_a_second_writer_gets_a_clear_busy_error(ws):
    ctx = mp.get_context("spawn")
    started, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(ws.workspace), started, release))
    holder.start()
    try:
        assert started.wait(60)
        with pytest.raises(WorkspaceBusyError, match="test holder"):
            with workspace_lock(ws, purpose="second", wait_s=0.2):
                pass
    finally:
        release.set()
        holder.join(30)
    with workspace_lock(ws, purpose="after", wait_s=5):
        pass


def test_git_workspace_tracks_and_commits_the_dvc_pointer(tmp_path, monkeypatch):
    """In a Git root DVC runs with SCM: import and a deletion work and each commits the .dvc file."""
    import subprocess

    for key, value in {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@e"}.items():
        monkeypatch.setenv(key, value)
    ws = make_workspace(tmp_path / "ws")
    subprocess.run(["git", "init", "-q", str(ws)], check=True)
    settings = load_settings(ws)
    import_dataset(settings, init_workspace(settings), "digits")
    result = apply_deletion(settings, "digits", [4, 5], batch_id="batch-git")
    assert result.git_commit
    log = subprocess.run(["git", "-C", str(ws), "log", "--format=%s", "--", "data/digits.dvc"], capture_output=True, text=True, check=True).stdout
    assert "batch-git" in log and "forgetflow import digits" in log  # the import commits its pointer too
    assert dvc_workspace(settings).status_clean(settings.data_dir / "digits")
