"""DVC's content-addressed objects: which objects make up a dataset version, where every copy
of them lives (cache and remote), and how to read an old version back from the cache."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from forgetflow.data.importer import dvc_workspace
from forgetflow.data.store import DatasetVersion
from forgetflow.data.versioning import REMOTE_NAME
from forgetflow.errors import VersioningError
from forgetflow.settings import Settings


@dataclass
class ObjectStore:
    """One object database (the local cache or the remote): a filesystem and an oid -> path map."""

    label: str
    fs: object
    odb: object

    def path(self, oid: str) -> str:
        return self.odb.oid_to_path(oid)

    def exists(self, oid: str) -> bool:
        return self.fs.exists(self.path(oid))

    def read(self, oid: str) -> bytes:
        with self.fs.open(self.path(oid), "rb") as handle:
            return handle.read()

    def remove(self, oid: str) -> bool:
        path = self.path(oid)
        if not self.fs.exists(path):
            return False
        self.fs.rm(path)
        return True

    def all_oids(self) -> list[str]:
        return sorted(self.odb.all())


def object_stores(settings: Settings) -> list[ObjectStore]:
    """The local DVC cache and the configured remote."""
    dvc_workspace(settings).ensure()
    from dvc.repo import Repo

    with Repo(str(settings.workspace)) as repo:
        cache = repo.cache.local
        remote = repo.cloud.get_remote_odb(REMOTE_NAME)
        return [ObjectStore("cache", cache.fs, cache), ObjectStore("remote", remote.fs, remote)]


def version_listing(settings: Settings, md5: str, stores: list[ObjectStore] | None = None) -> dict[str, str]:
    """relpath -> object md5 for a tracked directory version (from its `.dir` object)."""
    for store in stores or object_stores(settings):
        oid = f"{md5}.dir"
        if store.exists(oid):
            return {entry["relpath"]: entry["md5"] for entry in json.loads(store.read(oid))}
    raise VersioningError(f"data version {md5} is not in the DVC cache or remote", "it may have been erased; see `forgetflow audit`")


def materialise_version(settings: Settings, name: str, md5: str) -> DatasetVersion:
    """Open an old dataset version from DVC's objects (hard links into scratch space, no copies).

    The deletion flow reads the forget set from the pre-deletion version this way, so the forget
    set never needs a copy of its own and a crash before erasure loses nothing.
    """
    root = version_scratch(settings, md5) / name
    if (root / "meta.json").is_file():
        return DatasetVersion(root)
    stores = object_stores(settings)
    listing = version_listing(settings, md5, stores)
    staging = root.parent / f".partial-{name}"
    shutil.rmtree(staging, ignore_errors=True)
    for relpath, oid in listing.items():
        target = staging / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        local = stores[0].path(oid)
        if os.path.exists(local):
            try:
                os.link(local, target)
            except OSError:
                shutil.copyfile(local, target)
        elif stores[1].exists(oid):
            target.write_bytes(stores[1].read(oid))
        else:
            raise VersioningError(f"object {oid} ({relpath}) of data version {md5} is missing", "run `dvc fetch` or restore the remote")
    os.replace(staging, root)
    return DatasetVersion(root)


def version_scratch(settings: Settings, md5: str) -> Path:
    return settings.state_dir / "versions" / md5


def drop_materialised(settings: Settings, md5: str) -> None:
    shutil.rmtree(version_scratch(settings, md5), ignore_errors=True)
