"""Version the data for a deletion batch: remove the forget set, rewrite the touched shards,
record a new DVC version and push it; commit the `.dvc` file when the workspace is a Git root.

Idempotent: a batch whose samples are already absent from the current version (a re-run after
a crash past this step) is recognised and not applied twice.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from forgetflow.data import store
from forgetflow.data.importer import dataset_dir, dvc_workspace
from forgetflow.data.versioning import git_commit_dvc_file
from forgetflow.deletion.batch import crash_point
from forgetflow.deletion.objects import version_listing
from forgetflow.errors import DataIntegrityError
from forgetflow.settings import Settings


@dataclass
class DeletionVersion:
    dataset: str
    md5_before: str
    md5_after: str
    removed: int
    touched_shards: list[str]
    # DVC objects of the old version that hold forgotten data: erased after promotion.
    objects_to_erase: list[str]
    git_commit: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def apply_deletion(settings: Settings, dataset: str, sample_ids, *, batch_id: str, md5_before: str | None = None) -> DeletionVersion:
    root = dataset_dir(settings, dataset)
    dvc = dvc_workspace(settings)
    dvc.ensure()
    ids = np.unique(np.asarray(list(sample_ids), dtype=np.int64))
    current_md5 = dvc.md5(root)
    _settle_interrupted_swap(root, current_md5, md5_before)
    version = store.DatasetVersion(root)
    present = version.manifest["sample_id"].isin(ids)
    if md5_before is not None and current_md5 != md5_before and not present.any():
        # Re-run after a crash: this batch's version already exists. Recompute what it removed.
        return _already_applied(settings, dataset, md5_before, current_md5, ids)
    if present.sum() != len(ids):
        missing = ids[~np.isin(ids, version.manifest["sample_id"].to_numpy())]
        raise DataIntegrityError(
            f"{len(missing)} samples of batch {batch_id} are not in dataset {dataset} (e.g. {missing[:5].tolist()})",
            "resolve and validate the requests against the current data version first",
        )
    old_listing = version_listing(settings, current_md5)
    dvc_file = Path(str(root) + ".dvc")
    previous_dvc_file = dvc_file.read_text()
    removal = version.remove_samples(ids)
    crash_point("deletion-swapped")
    try:
        md5_after = dvc.track(root)
    except BaseException:
        store.rollback_swap(root)
        dvc_file.write_text(previous_dvc_file)
        raise
    store.commit_swap(root)
    commit = git_commit_dvc_file(settings.workspace, dvc_file, f"forgetflow {batch_id}: {dataset} {current_md5[:8]} -> {md5_after[:8]} ({len(ids)} samples removed)")
    return DeletionVersion(
        dataset=dataset,
        md5_before=current_md5,
        md5_after=md5_after,
        removed=int(len(ids)),
        touched_shards=removal.touched_shards,
        objects_to_erase=_objects_with_forgotten_data(old_listing, removal.touched_shards, current_md5),
        git_commit=commit,
    )


def _settle_interrupted_swap(root: Path, recorded_md5: str, md5_before: str | None) -> None:
    """A crash between swapping the new version in and recording it leaves a backup folder.

    If DVC still records the old version, the new folder is discarded (the step will redo it);
    if DVC already recorded the new one, the old folder is dropped.
    """
    if not store.backup_dir(root).exists():
        return
    if md5_before is None or recorded_md5 == md5_before:
        store.rollback_swap(root)
    else:
        store.commit_swap(root)


def _objects_with_forgotten_data(old_listing: dict[str, str], touched_shards: list[str], md5_before: str) -> list[str]:
    """Old touched shards, the old manifest (it lists the forgotten rows), the old `.dir` listing."""
    objects = [old_listing[f"shards/{shard}"] for shard in touched_shards]
    objects.append(old_listing["manifest.csv"])
    objects.append(f"{md5_before}.dir")
    return sorted(set(objects))


def _already_applied(settings: Settings, dataset: str, md5_before: str, md5_after: str, ids: np.ndarray) -> DeletionVersion:
    old = version_listing(settings, md5_before)
    new = version_listing(settings, md5_after)
    touched = sorted(relpath.removeprefix("shards/") for relpath, oid in old.items() if relpath.startswith("shards/") and new.get(relpath) != oid)
    return DeletionVersion(dataset, md5_before, md5_after, int(len(ids)), touched, _objects_with_forgotten_data(old, touched, md5_before))
