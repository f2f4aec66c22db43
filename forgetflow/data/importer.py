"""Import a source into the workspace as a DVC-tracked dataset version, all or nothing."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from forgetflow.data import store
from forgetflow.data.sources import load_source
from forgetflow.data.splits import assign_given_splits, assign_splits
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
    """Load `source`, write `data/<name>/`, `dvc add` and push it; roll back on any failure.

    The source is read and checked in full before the workspace gets anything (a bad manifest
    leaves no trace); the workspace's folders and params.yaml are created only then.
    """
    from forgetflow.data.images import resize_shape
    from forgetflow.workspace import init_workspace

    ensure_writable(settings.workspace)
    raw = load_source(source, path, cache_dir=settings.state_dir / "sources", download=download, resize=resize_shape(params.data.resize))
    name = check_name(name or raw.name)
    refuse_erased_images(settings, raw.images)
    split_args = {"val_fraction": params.data.val_fraction, "test_fraction": params.data.test_fraction, "seed": params.data.split_seed}
    if raw.given_split is not None:
        splits = assign_given_splits(raw.labels, raw.given_split, **split_args)
    else:
        splits = assign_splits(raw.labels, raw.official_split, **split_args)
    description = {
        **raw.description,
        "val_fraction": params.data.val_fraction,
        "test_fraction": params.data.test_fraction if raw.official_split is None else None,
        "split_seed": params.data.split_seed,
    }
    if raw.subjects is None:
        subjects = assign_subjects(len(raw.labels), params.data.samples_per_subject, params.data.split_seed)
        description.update(samples_per_subject=params.data.samples_per_subject, subjects="synthetic (see README: Subjects)")
    else:
        subjects = raw.subjects
        description.update(subjects="given by the source (real subject IDs)", splits_given=raw.given_split is not None)
    description.pop("root", None)  # machine-specific; keeps the md5 the same on every machine

    init_workspace(settings)
    root = dataset_dir(settings, name)
    dvc = dvc_workspace(settings)
    dvc.ensure()

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
    """imagefolder: the folder's name; manifest: the CSV's name without .csv; others: the source."""
    if source == "imagefolder" and path:
        return Path(path).name
    if source == "manifest" and path:
        return Path(path).stem
    return source


def check_name(name: str) -> str:
    """A dataset name is a folder under data/ and part of DVC and MLflow names: keep it plain."""
    import re

    from forgetflow.errors import DataSourceError

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", name or ""):
        raise DataSourceError(f"{name!r} cannot name a dataset", "use letters, digits, '.', '_' and '-' (pass --name NAME to `forgetflow data import`)")
    return name


def dataset_names(settings: Settings) -> list[str]:
    """The datasets in the workspace (hidden folders are the store's staging and backup copies)."""
    return sorted(p.parent.name for p in settings.data_dir.glob("*/meta.json") if not p.parent.name.startswith("."))


def default_dataset(settings: Settings, name: str | None = None) -> str:
    """`name`, or the workspace's only dataset; with none or several, an error that lists them."""
    from forgetflow.errors import ConfigError

    if name is not None:
        return name
    names = dataset_names(settings)
    if len(names) == 1:
        return names[0]
    if not names:
        raise ConfigError(f"no dataset in {settings.data_dir}", "import one first: forgetflow data import digits (or manifest FILE.csv, imagefolder DIR)")
    raise ConfigError(f"the workspace holds several datasets: {', '.join(names)}", "name one, e.g. --dataset " + names[0])


def refuse_erased_images(settings: Settings, images) -> None:
    """A re-import must not bring back images that deletion requests erased: the tombstones hold
    the SHA-256 of every erased image (as stored), which the new images are checked against."""
    import json

    from forgetflow.data.store import content_hashes
    from forgetflow.errors import DataSourceError

    folder = settings.state_dir / "erasure"
    erased = set()
    for tombstone in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            erased.update(h for hashes in json.loads(tombstone.read_text()).get("content_hashes", {}).values() for h in hashes)
        except (OSError, ValueError, AttributeError):
            continue  # not a tombstone (erasure verification reports damaged ones)
    if not erased:
        return
    again = sum(h in erased for h in content_hashes(images))
    if again:
        raise DataSourceError(
            f"{again} of the images to import were erased by earlier deletion requests",
            "remove them from the source (for a manifest: their rows) before importing again; `forgetflow audit` shows the requests",
        )


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
