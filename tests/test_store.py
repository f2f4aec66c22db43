"""Dataset store: round trip, shard rewrite, md5 stability, corruption detection, torn swaps."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from forgetflow.data import store
from forgetflow.data.importer import describe, dvc_workspace, ensure_dataset, import_dataset
from forgetflow.data.sources import load_source
from forgetflow.errors import DataIntegrityError
from forgetflow.settings import load_settings
from forgetflow.workspace import init_workspace

from conftest import make_workspace


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    settings = load_settings(make_workspace(tmp_path_factory.mktemp("store") / "ws"))
    params = init_workspace(settings)
    info = import_dataset(settings, params, "digits")
    return settings, params, info


def test_round_trip_returns_every_source_image_with_its_label(imported):
    settings, _, info = imported
    raw = load_source("digits")
    version = store.DatasetVersion(settings.data_dir / "digits")
    loaded = version.load()
    assert np.array_equal(loaded.sample_ids, np.arange(len(raw.labels)))
    assert np.array_equal(loaded.images, raw.images)
    assert np.array_equal(loaded.labels, raw.labels)
    assert info.n_samples == 1797 and sum(info.splits.values()) == 1797
    assert set(version.manifest.columns) == set(store.MANIFEST_COLUMNS)
    assert version.manifest["content_hash"].tolist() == store.content_hashes(raw.images)


def test_splits_are_stratified_and_subjects_deterministic(imported):
    settings, params, _ = imported
    manifest = store.DatasetVersion(settings.data_dir / "digits").manifest
    per_class = manifest[manifest.split == "test"].label.value_counts()
    assert per_class.min() >= 30  # 20% of ~180 per class
    counts = manifest.subject_id.value_counts()
    assert counts.max() == params.data.samples_per_subject
    again = load_source("digits")
    from forgetflow.data.subjects import assign_subjects

    assert list(assign_subjects(len(again.labels), params.data.samples_per_subject, params.data.split_seed)) == manifest.subject_id.tolist()


def test_md5_is_stable_across_reimport_and_workspaces(imported, tmp_path):
    settings, params, info = imported
    other = load_settings(make_workspace(tmp_path / "other"))
    assert import_dataset(other, init_workspace(other), "digits").md5 == info.md5
    assert import_dataset(settings, params, "digits").md5 == info.md5
    assert len(info.md5) == 32


def test_md5_changes_when_split_parameters_change(imported, tmp_path):
    _, _, info = imported
    other = load_settings(make_workspace(tmp_path / "other", data={"val_fraction": 0.2, "test_fraction": 0.2, "shard_size": 256, "samples_per_subject": 4, "split_seed": 0}))
    assert import_dataset(other, init_workspace(other), "digits").md5 != info.md5


def test_remove_samples_rewrites_only_touched_shards(tmp_path):
    settings = load_settings(make_workspace(tmp_path / "ws"))
    params = init_workspace(settings)
    info = import_dataset(settings, params, "digits")
    root = settings.data_dir / "digits"
    version = store.DatasetVersion(root)
    before = {p.name: (p.stat().st_ino, store.sha256_file(p)) for p in (root / "shards").iterdir()}
    forget = [3, 10, 300]  # shard 0 (ids 0..255) and shard 1 (256..511)
    removal = version.remove_samples(forget)
    store.commit_swap(root)
    assert removal.touched_shards == ["shard-00000.npy", "shard-00001.npy"]
    assert removal.manifest.sample_id.tolist() == forget
    raw = load_source("digits")
    assert np.array_equal(removal.images, raw.images[forget])
    after = {p.name: store.sha256_file(p) for p in (root / "shards").iterdir()}
    for shard, (_, digest) in before.items():
        assert (after[shard] != digest) == (shard in removal.touched_shards)
    reloaded = store.DatasetVersion(root)
    assert not reloaded.verify()
    assert not set(forget) & set(reloaded.manifest.sample_id)
    kept = reloaded.load()
    expected_ids = np.setdiff1d(np.arange(1797), forget)
    assert np.array_equal(kept.sample_ids, expected_ids)
    assert np.array_equal(kept.images, raw.images[expected_ids])
    assert reloaded.meta["next_sample_id"] == 1797  # IDs are never reused
    new_md5 = dvc_workspace(settings).track(root)
    assert new_md5 != info.md5


def test_corrupted_shard_is_detected_and_named(tmp_path):
    settings = load_settings(make_workspace(tmp_path / "ws"))
    params = init_workspace(settings)
    import_dataset(settings, params, "digits")
    shard = settings.data_dir / "digits" / "shards" / "shard-00002.npy"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    version = store.DatasetVersion(settings.data_dir / "digits")
    assert version.verify() == ["shard-00002.npy"]
    with pytest.raises(DataIntegrityError, match="shard-00002.npy"):
        version.load(split="train")
    with pytest.raises(DataIntegrityError, match="shard-00002.npy"):
        ensure_dataset(settings, params, "digits")


def test_torn_swap_recovers_the_previous_version(tmp_path):
    settings = load_settings(make_workspace(tmp_path / "ws"))
    params = init_workspace(settings)
    import_dataset(settings, params, "digits")
    root = settings.data_dir / "digits"
    # Simulate a crash between the two renames of swap_in: only the backup exists, plus staging debris.
    os.replace(root, root.parent / ".previous-digits")
    (root.parent / ".staging-digits-deadbeef").mkdir()
    version = store.DatasetVersion(root)
    assert len(version.manifest) == 1797
    assert not (root.parent / ".staging-digits-deadbeef").exists()


WRITER_PAUSED_MID_WRITE = """
import sys, time
from pathlib import Path
from forgetflow.data import store
root = Path(sys.argv[1])
with store.writing(root) as staging:
    (staging / "shards").mkdir(parents=True)
    print(staging, flush=True)
    time.sleep(60)  # killed by the test while it holds the staging folder
"""


def test_opening_a_version_leaves_a_live_writers_staging_folder_alone(tmp_path):
    import subprocess
    import sys

    settings = load_settings(make_workspace(tmp_path / "ws"))
    params = init_workspace(settings)
    import_dataset(settings, params, "digits")
    root = settings.data_dir / "digits"
    writer = subprocess.Popen([sys.executable, "-c", WRITER_PAUSED_MID_WRITE, str(root)], stdout=subprocess.PIPE, text=True)
    try:
        staging = Path(writer.stdout.readline().strip())
        assert staging.is_dir()
        assert len(store.DatasetVersion(root).manifest) == 1797, "reading during a write sees the current version"
        assert staging.is_dir(), "a reader must not remove the staging folder of a live writer"
    finally:
        writer.kill()
        writer.wait()
    # The writer died holding it: its folder is debris now, and the next reader clears it.
    store.DatasetVersion(root)
    assert not staging.exists()


def test_failed_dvc_push_leaves_no_half_written_version(tmp_path):
    ws = make_workspace(tmp_path / "ws")
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the remote folder should be")
    settings = load_settings(ws, dvc_remote=str(blocker / "remote"))
    params = init_workspace(settings)
    from forgetflow.errors import VersioningError

    with pytest.raises(VersioningError):
        import_dataset(settings, params, "digits")
    assert not (settings.data_dir / "digits").exists()
    assert not (settings.data_dir / "digits.dvc").exists()


def test_meta_records_shard_hashes_and_normalisation(imported):
    settings, _, _ = imported
    meta = json.loads((settings.data_dir / "digits" / "meta.json").read_text())
    assert meta["image_shape"] == [8, 8, 1] and meta["class_names"] == [str(i) for i in range(10)]
    assert len(meta["shards"]) == 8 and all(len(v["sha256"]) == 64 for v in meta["shards"].values())
    assert 0 < meta["mean"][0] < 1 and meta["std"][0] > 0
    assert describe(settings, "digits").md5 == dvc_workspace(settings).md5(settings.data_dir / "digits")
