"""The pandas frames the suites run on. Joins and lookups happen here, in vectorised pandas, and
the suites check columns of the result: GX's `ExpectColumnValuesToBeInSet` with a 70,000-ID value
set took 3-4 s per run (the set is validated and serialised with the suite), a left join takes
milliseconds. Missing values mean "no match" and are what the not-null expectations catch.

Frames (one row per ...):
- `request`    requested target (as given, with repeats): its manifest facts, erasure status;
- `forget_set` resolved sample: manifest label/split/hash next to what the stored shard holds;
- `classes`    class: train count, how many the forget set removes, what is left;
- `manifest`   sample of the dataset version (sanity of the version the request resolves against).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from forgetflow.data.store import DatasetVersion, sha256_bytes
from forgetflow.errors import DataIntegrityError
from forgetflow.requests.ledger import RequestStatus
from forgetflow.requests.resolution import ForgetSet, RecordedRequest, class_index, manifest_subject_tokens


def erased_targets(statuses: dict[str, RequestStatus]) -> tuple[set[int], set[str]]:
    """Sample IDs and subject tokens already erased by earlier requests, from the ledger.

    An `erased` entry may list `sample_ids` itself; otherwise the request's last `validated` entry
    says which samples it resolved to.
    """
    sample_ids: set[int] = set()
    subjects: set[str] = set()
    for status in statuses.values():
        if status.state != "erased":
            continue
        erased = status.last("erased") or {}
        validated = status.last("validated") or {}
        sample_ids.update(int(i) for i in erased.get("sample_ids") or validated.get("sample_ids") or [])
        received = status.received or {}
        if received.get("kind") == "subjects":
            subjects.update(received.get("targets") or [])
    return sample_ids, subjects


def request_frame(request: RecordedRequest, version: DatasetVersion, *, salt: bytes | None, erased_ids: set[int], erased_subjects: set[str]) -> pd.DataFrame:
    manifest = version.manifest
    if request.kind == "samples":
        frame = pd.DataFrame({"target": pd.Series(request.targets, dtype="int64")})
        facts = manifest[["sample_id", "split", "label"]].rename(columns={"sample_id": "target"})
        frame = frame.merge(facts, on="target", how="left")  # keeps request order and repeats
        frame["split"] = frame["split"].astype(object).where(frame["split"].notna(), None)
        frame["label"] = frame["label"].astype(float)
        # IDs below next_sample_id are never reused, so one missing from the manifest was deleted.
        removed = (frame["target"] < int(version.meta.get("next_sample_id", 0))) & frame["split"].isna()
        frame["already_erased"] = frame["target"].isin(erased_ids) | removed
        if request.new_labels is not None:
            new = [class_index(n, version.class_names) for n in request.new_labels]
            frame["new_label"] = pd.Series([np.nan if n is None else float(n) for n in new], dtype=float)
            changed = frame["new_label"] != frame["label"]
            frame["label_changed"] = changed.astype(object).where(frame["label"].notna() & frame["new_label"].notna(), None)
        return frame
    if request.kind == "subjects":
        counts = manifest_subject_tokens(manifest, salt).value_counts()
        frame = pd.DataFrame({"target": pd.Series(request.targets, dtype=object)})
        frame["n_samples"] = frame["target"].map(counts).astype(float)
        frame["already_erased"] = frame["target"].isin(erased_subjects)
        return frame
    train_counts = manifest.loc[manifest["split"] == "train", "label"].value_counts()
    labels = [class_index(t, version.class_names) for t in request.targets]
    frame = pd.DataFrame({"target": [str(t) for t in request.targets], "label": [np.nan if v is None else float(v) for v in labels]})
    frame["train_count"] = [np.nan if v is None else float(train_counts.get(v, 0)) for v in labels]
    return frame


def forget_set_frame(forget: ForgetSet, version: DatasetVersion) -> pd.DataFrame:
    """Each forget-set member next to the image the shard actually holds (read without trusting it)."""
    rows = forget.rows
    n = len(rows)
    stored_hash = np.full(n, None, dtype=object)
    shape = np.full(n, None, dtype=object)
    dtype = np.full(n, None, dtype=object)
    pixel_min = np.full(n, np.nan)
    pixel_max = np.full(n, np.nan)
    finite = np.full(n, None, dtype=object)
    for shard, index in rows.groupby("shard", sort=True).indices.items():
        try:
            array = version.read_shard(shard, verify=False)  # per-sample hashes below are the check
        except (DataIntegrityError, ValueError, OSError):
            continue  # missing or unreadable: stored_hash stays empty and the suite says so
        if array.ndim == 0:
            continue
        offsets = rows["offset"].to_numpy()[index]
        ok = (offsets >= 0) & (offsets < len(array))
        index, offsets = index[ok], offsets[ok]
        if not len(index):
            continue
        images = array[offsets]
        flat = images.reshape(len(images), -1)
        shape[index] = "x".join(map(str, array.shape[1:]))
        dtype[index] = str(array.dtype)
        if flat.shape[1]:
            is_float = np.issubdtype(array.dtype, np.floating)
            pixel_min[index] = np.nanmin(flat, axis=1) if is_float else flat.min(axis=1)
            pixel_max[index] = np.nanmax(flat, axis=1) if is_float else flat.max(axis=1)
            finite[index] = np.isfinite(flat).all(axis=1) if is_float else True
        stored_hash[index] = [sha256_bytes(np.ascontiguousarray(image).tobytes()) for image in images]
    return pd.DataFrame(
        {
            "sample_id": rows["sample_id"].to_numpy(np.int64),
            "label": rows["label"].to_numpy(np.int64),
            "split": rows["split"].astype(str).to_numpy(),
            "is_train": (rows["split"] == "train").to_numpy(np.int64),
            "content_hash": rows["content_hash"].astype(str).to_numpy(),
            "stored_hash": stored_hash,
            "shape": shape,
            "dtype": dtype,
            "pixel_min": pixel_min,
            "pixel_max": pixel_max,
            "finite": finite,
        }
    )


def classes_frame(forget: ForgetSet, version: DatasetVersion) -> pd.DataFrame:
    manifest = version.manifest
    labels = np.arange(version.num_classes)
    train = manifest.loc[manifest["split"] == "train", "label"].value_counts().reindex(labels, fill_value=0)
    removed = forget.rows.loc[forget.rows["split"] == "train", "label"].value_counts().reindex(labels, fill_value=0)
    remaining = train - removed
    return pd.DataFrame(
        {
            "label": labels,
            "train_count": train.to_numpy(),
            "forgotten_train": removed.to_numpy(),
            # Only classes this forget set touches are held to the per-class minimum.
            "remaining_if_touched": np.where(removed.to_numpy() > 0, remaining.to_numpy(), np.nan),
            "kept_class": np.where(remaining.to_numpy() > 0, labels, np.nan),
        }
    )


def manifest_frame(version: DatasetVersion) -> pd.DataFrame:
    return version.manifest[["sample_id", "subject_id", "label", "split", "content_hash"]]
