"""Erase forgotten samples from every place the pipeline copied them to, and prove it.

Places (stack.md §7.2): the workspace (current version, staging and backup folders, scratch
copies of old versions), the DVC cache and remote (old shard and manifest objects), the DVC run
cache, Prefect's local result storage, and validation outputs. MLflow holds only hashes and counts
(synthetic input examples, no data artifacts), so nothing there needs erasing.

Erasure does not trust bookkeeping alone: besides the objects the batch recorded, it sweeps every
object in the cache and the remote for the forgotten samples' content hashes (images in `.npy`
shards, rows in manifests), so copies left by older versions are caught too.
"""

from __future__ import annotations

import io
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from forgetflow.data.importer import dataset_dir
from forgetflow.data.store import DatasetVersion, content_hashes
from forgetflow.deletion.objects import ObjectStore, drop_materialised, object_stores
from forgetflow.settings import Settings

NPY_MAGIC = b"\x93NUMPY"
HEX64 = re.compile(r"\b[0-9a-f]{64}\b")


@dataclass
class ErasureRecord:
    objects_removed: dict[str, list[str]] = field(default_factory=dict)  # store label -> oids
    folders_removed: list[str] = field(default_factory=list)
    run_cache_removed: bool = False
    prefect_results_removed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class ErasureCheck:
    ok: bool
    problems: list[str]
    objects_scanned: int
    forgotten_hashes: int

    def as_dict(self) -> dict:
        return asdict(self)


def object_holds_forgotten(data: bytes, forgotten: set[str]) -> bool:
    """True if an object is an image shard with a forgotten image, or text naming a forgotten hash."""
    if data.startswith(NPY_MAGIC):
        try:
            array = np.load(io.BytesIO(data), allow_pickle=False)
        except ValueError:
            return False
        return array.ndim == 4 and array.dtype == np.uint8 and not forgotten.isdisjoint(content_hashes(array))
    # Text objects (manifests, reports): any 64-hex token that is a forgotten image's hash.
    text = data.decode("utf-8", errors="ignore")
    return not forgotten.isdisjoint(HEX64.findall(text))


def erase(settings: Settings, dataset: str, forgotten_hashes: set[str], *, recorded_objects: list[str], old_versions: list[str]) -> ErasureRecord:
    record = ErasureRecord()
    stores = object_stores(settings)
    for store in stores:
        removed = [oid for oid in recorded_objects if store.remove(oid)]
        removed += [oid for oid in sweep(store, forgotten_hashes) if store.remove(oid)]
        record.objects_removed[store.label] = sorted(set(removed))
    for md5 in old_versions:
        drop_materialised(settings, md5)
        record.folders_removed.append(f".forgetflow/versions/{md5}")
    root = dataset_dir(settings, dataset)
    for leftover in list(root.parent.glob(f".previous-{root.name}")) + list(root.parent.glob(f".staging-{root.name}-*")):
        shutil.rmtree(leftover, ignore_errors=True)
        record.folders_removed.append(str(leftover.relative_to(settings.workspace)))
    run_cache = settings.workspace / ".dvc" / "cache" / "runs"
    if run_cache.exists():
        shutil.rmtree(run_cache)
        record.run_cache_removed = True
    record.prefect_results_removed = _clear_prefect_results(settings)
    return record


def sweep(store: ObjectStore, forgotten: set[str]) -> list[str]:
    """Every object in a store that still holds forgotten data."""
    hits = []
    for oid in store.all_oids():
        if oid.endswith(".dir"):
            continue
        if object_holds_forgotten(store.read(oid), forgotten):
            hits.append(oid)
    return hits


def _clear_prefect_results(settings: Settings) -> int:
    """forgetflow's tasks persist no results, but a user's PREFECT_RESULTS setting might: purge them."""
    import os

    folder = Path(os.environ.get("PREFECT_RESULTS_LOCAL_STORAGE_PATH", settings.state_dir / "prefect" / "storage"))
    if not folder.is_dir():
        return 0
    count = sum(1 for p in folder.rglob("*") if p.is_file())
    shutil.rmtree(folder)
    return count


def verify_erasure(settings: Settings, dataset: str, forgotten_hashes: set[str], forgotten_ids: set[int]) -> ErasureCheck:
    """The proof: no forgotten ID in the current manifest, no object anywhere holding forgotten data."""
    problems = []
    version = DatasetVersion(dataset_dir(settings, dataset))
    still_listed = set(version.manifest["sample_id"].tolist()) & forgotten_ids
    if still_listed:
        problems.append(f"{len(still_listed)} forgotten sample IDs are still in the current manifest of {dataset}")
    rehashed = set(version.manifest["content_hash"]) & forgotten_hashes
    if rehashed:
        problems.append(f"{len(rehashed)} forgotten images are still in {dataset} under other IDs")
    scanned = 0
    for store in object_stores(settings):
        oids = store.all_oids()
        scanned += len(oids)
        for oid in sweep(store, forgotten_hashes):
            problems.append(f"DVC {store.label} object {oid} holds forgotten data")
    for folder in (settings.state_dir / "versions", settings.state_dir / "scratch"):
        for path in folder.rglob("*.npy") if folder.exists() else []:
            if object_holds_forgotten(path.read_bytes(), forgotten_hashes):
                problems.append(f"scratch copy {path.relative_to(settings.workspace)} holds forgotten data")
    if (settings.workspace / ".dvc" / "cache" / "runs").exists():
        problems.append("the DVC run cache (.dvc/cache/runs) still exists")
    return ErasureCheck(ok=not problems, problems=problems, objects_scanned=scanned, forgotten_hashes=len(forgotten_hashes))
