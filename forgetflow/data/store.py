"""The versioned dataset store: image shards plus a manifest, one directory per dataset.

Layout of `data/<name>/` (the directory DVC tracks; its DVC md5 is the data version ID):

    meta.json         what the dataset is: classes, image shape, shards and their SHA-256
    manifest.csv      one row per sample: sample_id, subject_id, label, split, shard, offset, content_hash
    shards/shard-NNNNN.npy   uint8 arrays (n, H, W, C)

Every file is written deterministically, so importing the same source twice gives the same md5.
Writes go to a staging directory that is swapped in at the end, so a crash never leaves a
half-written version in place: the previous version is restored by `recover()`. A writer holds
the writer lock (an flock on the folder that holds the dataset and its staging copies) from
staging to swap, and recovery runs only under it, so a reader never removes a live writer's work.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import shutil
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from forgetflow.errors import DataIntegrityError, WorkspaceError

MANIFEST_COLUMNS = ["sample_id", "subject_id", "label", "split", "shard", "offset", "content_hash"]
FORMAT_VERSION = 1


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def content_hashes(images: np.ndarray) -> list[str]:
    """SHA-256 of each image's raw bytes (uint8, HWC): detects corruption of single samples."""
    return [sha256_bytes(np.ascontiguousarray(image).tobytes()) for image in images]


@dataclass
class LoadedSplit:
    images: np.ndarray  # uint8 (n, H, W, C)
    labels: np.ndarray  # int64 (n,)
    sample_ids: np.ndarray  # int64 (n,)


@dataclass
class Removal:
    """What a deletion took out of the store (kept in memory only: it is the data being erased)."""

    manifest: pd.DataFrame
    images: np.ndarray
    touched_shards: list[str]


class DatasetVersion:
    """One dataset directory: read, verify, and rewrite it."""

    def __init__(self, root: Path):
        self.root = Path(root)
        recover(self.root)
        meta_path = self.root / "meta.json"
        if not meta_path.is_file():
            raise WorkspaceError(f"no dataset at {self.root}", "import one first: forgetflow data import digits")
        self.meta = json.loads(meta_path.read_text())
        self.manifest = pd.read_csv(self.root / "manifest.csv", dtype={"subject_id": str, "split": str, "shard": str, "content_hash": str})

    # Facts --------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.meta["name"]

    @property
    def class_names(self) -> list[str]:
        return list(self.meta["class_names"])

    @property
    def num_classes(self) -> int:
        return len(self.meta["class_names"])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.meta["image_shape"])

    def split_counts(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.manifest["split"].value_counts().sort_index().items()}

    # Reading ------------------------------------------------------------------------------
    def _shard_path(self, shard: str) -> Path:
        return self.root / "shards" / shard

    def read_shard(self, shard: str, *, verify: bool = True) -> np.ndarray:
        path = self._shard_path(shard)
        expected = self.meta["shards"].get(shard, {}).get("sha256")
        if not path.is_file():
            raise DataIntegrityError(f"shard {shard} of dataset {self.name} is missing", "restore it with `dvc checkout` or `dvc pull` in the workspace")
        data = path.read_bytes()
        if verify and sha256_bytes(data) != expected:
            raise DataIntegrityError(
                f"shard {shard} of dataset {self.name} is corrupted: its SHA-256 does not match meta.json",
                "restore the dataset with `dvc checkout --force` (or `dvc pull`) in the workspace",
            )
        return np.load(io.BytesIO(data), allow_pickle=False)

    def verify(self) -> list[str]:
        """Check every shard against meta.json; return the names of corrupted or missing shards."""
        bad = []
        for shard, info in self.meta["shards"].items():
            path = self._shard_path(shard)
            if not path.is_file() or sha256_file(path) != info["sha256"]:
                bad.append(shard)
        return bad

    def load(self, split: str | None = None, sample_ids=None, *, verify: bool = True) -> LoadedSplit:
        """Images, labels and sample IDs of one split (or of given IDs), in sample-ID order."""
        rows = self.manifest
        if split is not None:
            rows = rows[rows["split"] == split]
        if sample_ids is not None:
            rows = rows[rows["sample_id"].isin(np.asarray(sample_ids))]
        rows = rows.sort_values("sample_id")
        h, w, c = self.image_shape
        images = np.empty((len(rows), h, w, c), dtype=np.uint8)
        position = 0
        for shard, group in rows.groupby("shard", sort=True):
            array = self.read_shard(shard, verify=verify)
            images[position : position + len(group)] = array[group["offset"].to_numpy()]
            position += len(group)
        # groupby visits shards in name order; shards hold ascending IDs, so the order is preserved.
        return LoadedSplit(images=images, labels=rows["label"].to_numpy(np.int64), sample_ids=rows["sample_id"].to_numpy(np.int64))

    # Rewriting ----------------------------------------------------------------------------
    def remove_samples(self, sample_ids) -> Removal:
        """Delete samples: rewrite only the shards that hold them, swap the new version in.

        Untouched shards are hard-linked into the staging directory, never copied or rewritten,
        so the DVC cache grows by the touched shards only. IDs are never reused.
        """
        ids = np.unique(np.asarray(list(sample_ids), dtype=np.int64))
        present = self.manifest["sample_id"].isin(ids)
        unknown = np.setdiff1d(ids, self.manifest["sample_id"].to_numpy())
        if len(unknown):
            raise DataIntegrityError(f"{len(unknown)} sample IDs are not in dataset {self.name} (e.g. {unknown[:5].tolist()})", "resolve requests against the current version")
        removed_rows = self.manifest[present].sort_values("sample_id")
        removed_images = self.load(sample_ids=ids).images
        touched = sorted(removed_rows["shard"].unique().tolist())
        kept = self.manifest[~present].copy()

        meta = json.loads(json.dumps(self.meta))
        with writing(self.root) as staging:
            (staging / "shards").mkdir(parents=True)
            for shard in self.meta["shards"]:
                source = self._shard_path(shard)
                target = staging / "shards" / shard
                if shard not in touched:
                    os.link(source, target)
                    continue
                rows = kept[kept["shard"] == shard].sort_values("sample_id")
                array = self.read_shard(shard)[rows["offset"].to_numpy()]
                data = _npy_bytes(array)
                _write_file(target, data)
                meta["shards"][shard] = {"sha256": sha256_bytes(data), "count": int(len(rows))}
                kept.loc[rows.index, "offset"] = np.arange(len(rows))
            meta["n_samples"] = int(len(kept))
            _write_manifest_and_meta(staging, kept.sort_values("sample_id"), meta)
            swap_in(staging, self.root)
        self.meta = meta
        self.manifest = kept.sort_values("sample_id").reset_index(drop=True)
        return Removal(manifest=removed_rows.reset_index(drop=True), images=removed_images, touched_shards=touched)


def write_dataset(root: Path, *, name: str, images: np.ndarray, labels: np.ndarray, class_names: list[str], splits: np.ndarray, subjects: np.ndarray, shard_size: int, description: dict) -> DatasetVersion:
    """Write a fresh dataset version (sample IDs 0..N-1 in source order) and swap it in."""
    n = len(images)
    with writing(root) as staging:
        (staging / "shards").mkdir(parents=True)
        shards, shard_names, offsets = {}, [], []
        for start in range(0, n, shard_size):
            shard = f"shard-{start // shard_size:05d}.npy"
            data = _npy_bytes(images[start : start + shard_size])
            _write_file(staging / "shards" / shard, data)
            count = min(shard_size, n - start)
            shards[shard] = {"sha256": sha256_bytes(data), "count": int(count)}
            shard_names += [shard] * count
            offsets += list(range(count))
        manifest = pd.DataFrame(
            {
                "sample_id": np.arange(n, dtype=np.int64),
                "subject_id": subjects,
                "label": labels.astype(np.int64),
                "split": splits,
                "shard": shard_names,
                "offset": offsets,
                "content_hash": content_hashes(images),
            },
            columns=MANIFEST_COLUMNS,
        )
        train = images[splits == "train"].astype(np.float64) / 255.0
        meta = {
            "format_version": FORMAT_VERSION,
            "name": name,
            "class_names": list(class_names),
            "image_shape": list(images.shape[1:]),
            "dtype": "uint8",
            "pixel_range": [0, 255],
            # Per-channel statistics of the training split, used by the model's input normalisation.
            "mean": [round(float(v), 6) for v in train.mean(axis=(0, 1, 2))],
            "std": [round(float(v), 6) for v in train.std(axis=(0, 1, 2)) + 1e-6],
            "n_samples": int(n),
            "next_sample_id": int(n),
            "shard_size": int(shard_size),
            "shards": shards,
            "source": description,
        }
        _write_manifest_and_meta(staging, manifest, meta)
        swap_in(staging, root)
    return DatasetVersion(root)


def _write_manifest_and_meta(directory: Path, manifest: pd.DataFrame, meta: dict) -> None:
    _write_file(directory / "manifest.csv", manifest[MANIFEST_COLUMNS].to_csv(index=False, lineterminator="\n").encode())
    _write_file(directory / "meta.json", (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())


@contextmanager
def _writer_lock(root: Path, *, wait: bool):
    """The writer lock of `root`: an flock on its parent folder, so no lock file is left in the
    workspace and the OS drops it if the holder dies. Yields whether it was taken; without
    `wait`, a live writer elsewhere makes it yield False at once."""
    descriptor = os.open(root.parent, os.O_RDONLY)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)


@contextmanager
def writing(root: Path):
    """A fresh staging folder for a new version of `root`, under the dataset's writer lock;
    the caller swaps it in before leaving. A staging folder left by a failed write is removed."""
    root.parent.mkdir(parents=True, exist_ok=True)
    if not os.access(root.parent, os.W_OK):
        raise WorkspaceError(f"cannot write to {root.parent}", "choose a writable workspace with --workspace DIR or fix the permissions")
    with _writer_lock(root, wait=True):
        _recover_locked(root)
        staging = root.parent / f".staging-{root.name}-{uuid.uuid4().hex[:8]}"
        try:
            yield staging
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # gone already when it was swapped in


def backup_dir(root: Path) -> Path:
    return root.parent / f".previous-{root.name}"


def swap_in(staging: Path, root: Path) -> None:
    """Replace `root` by `staging` with two renames; `recover` finishes or undoes a torn swap."""
    backup = backup_dir(root)
    if backup.exists():
        shutil.rmtree(backup)
    if root.exists():
        os.replace(root, backup)
    os.replace(staging, root)


def commit_swap(root: Path) -> None:
    """The new version is accepted (e.g. DVC tracked it): drop the previous one."""
    with _writer_lock(root, wait=True):
        backup = backup_dir(root)
        if backup.exists():
            shutil.rmtree(backup)


def rollback_swap(root: Path) -> None:
    """Put the previous version back (or remove a version that had no predecessor)."""
    with _writer_lock(root, wait=True):  # a reader's recovery must not race the two steps
        backup = backup_dir(root)
        if root.exists():
            shutil.rmtree(root)
        if backup.exists():
            os.replace(backup, root)


def recover(root: Path) -> None:
    """After a crash between the two renames of `swap_in`, the previous version comes back and
    leftover staging folders go. A live writer's state is its own: with the dataset in place it
    is left alone; with the dataset missing (mid-swap, or a first import) this waits for it."""
    if not root.parent.is_dir():
        return
    with _writer_lock(root, wait=False) as taken:
        if taken:
            _recover_locked(root)
            return
    if not root.exists():
        with _writer_lock(root, wait=True):
            _recover_locked(root)


def _recover_locked(root: Path) -> None:
    backup = backup_dir(root)
    if not root.exists() and backup.exists():
        os.replace(backup, root)
    for leftover in root.parent.glob(f".staging-{root.name}-*") if root.parent.exists() else []:
        shutil.rmtree(leftover, ignore_errors=True)
