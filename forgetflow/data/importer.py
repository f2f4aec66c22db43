"""Import a source into the workspace as a DVC-tracked dataset version, all or nothing."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from forgetflow.data import store
from forgetflow.data.sources import load_source
from forgetflow.data.splits import assign_splits
from forgetflow.data.subjects import assign_subjects
from forgetflow.data.versioning import DvcWorkspace, git_commit_dvc_file
from forgetflow.params import Params
from forgetflow.settings import Settings
from forgetflow.workspace import ensure_writable


@dataclass
class DataVersionInfo:
    name: str
    path: str
    md5: str
    n_samples: int
    splits: dict
    num_classes: int
    image_shape: list

    def as_dict(self) -> dict:
        return asdict(self)


def dataset_dir(settings: Settings, name: str) -> Path:
    return settings.data_dir / name


def dvc_workspace(settings: Settings) -> DvcWorkspace:
    return DvcWorkspace(settings.workspace, settings.remote_url, settings.state_dir, settings.dvc_remote_config)


def describe(settings: Settings, name: str) -> DataVersionInfo:
    root = dataset_dir(settings, name)
    version = store.DatasetVersion(root)
    return DataVersionInfo(
        name=name,
        path=str(root),
        md5=dvc_workspace(settings).md5(root),
        n_samples=len(version.manifest),
        splits=version.split_counts(),
        num_classes=version.num_classes,
        image_shape=list(version.image_shape),
    )


def import_dataset(settings: Settings, params: Params, source: str, path: str | None = None, *, name: str | None = None, download: bool = False) -> DataVersionInfo:
    """Load `source`, write `data/<name>/`, `dvc add` and push it; roll back on any failure."""
    ensure_writable(settings.workspace)
    raw = load_source(source, path, cache_dir=settings.state_dir / "sources", download=download)
    name = name or raw.name
    root = dataset_dir(settings, name)
    dvc = dvc_workspace(settings)
    dvc.ensure()

    splits = assign_splits(raw.labels, raw.official_split, val_fraction=params.data.val_fraction, test_fraction=params.data.test_fraction, seed=params.data.split_seed)
    subjects = assign_subjects(len(raw.labels), params.data.samples_per_subject, params.data.split_seed)
    description = {
        **raw.description,
        "val_fraction": params.data.val_fraction,
        "test_fraction": params.data.test_fraction if raw.official_split is None else None,
        "split_seed": params.data.split_seed,
        "samples_per_subject": params.data.samples_per_subject,
        "subjects": "synthetic (see README: Subjects)",
    }
    description.pop("root", None)  # machine-specific; keeps the md5 the same on every machine

    dvc_file = Path(str(root) + ".dvc")
    previous_dvc_file = dvc_file.read_text() if dvc_file.exists() else None
    store.write_dataset(
        root,
        name=name,
        images=raw.images,
        labels=raw.labels,
        class_names=raw.class_names,
        splits=splits,
        subjects=subjects,
        shard_size=params.data.shard_size,
        description=description,
    )
    try:
        dvc.track(root)
    except BaseException:
        store.rollback_swap(root)
        if previous_dvc_file is None:
            dvc.untrack_new(root)
        else:
            dvc_file.write_text(previous_dvc_file)
        raise
    store.commit_swap(root)
    git_commit_dvc_file(settings.workspace, dvc_file, f"forgetflow import {source}: {name} {dvc.md5(root)[:8]}")
    return describe(settings, name)


def default_name(source: str, path: str | None) -> str:
    return Path(path).name if source == "imagefolder" and path else source


def ensure_dataset(settings: Settings, params: Params, source: str, path: str | None = None, *, download: bool = False, reimport: bool = False) -> DataVersionInfo:
    """Reuse the workspace's version of `source` when it is intact and tracked; import it otherwise.

    A present but corrupted version is an error, not a silent re-import: the user decides
    whether to restore it (`dvc checkout`) or replace it (`--reimport`).
    """
    from forgetflow.errors import DataIntegrityError

    name = default_name(source, path)
    root = dataset_dir(settings, name)
    tracked = Path(str(root) + ".dvc").is_file() and (root / "meta.json").is_file()
    if reimport or not tracked:
        return import_dataset(settings, params, source, path, name=name, download=download)
    bad = store.DatasetVersion(root).verify()
    if bad:
        raise DataIntegrityError(
            f"dataset {name} in {settings.data_dir} has corrupted or missing shards: {', '.join(bad)}",
            "restore it with `dvc checkout --force` in the workspace, or re-import with --reimport",
        )
    dvc_workspace(settings).ensure()
    return describe(settings, name)
