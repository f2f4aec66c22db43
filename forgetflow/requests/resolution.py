"""Resolve a recorded request to the concrete, sorted set of sample IDs it covers in a dataset version.

- `samples`  -> the given IDs (those present in the manifest; validation names the missing ones);
- `subjects` -> every sample of those subjects **in every split**: the erasure right covers all of a
  person's data wherever it sits. Samples left in val/test would still be personal data the
  pipeline keeps processing, and evaluating the unlearned model on them would measure it against
  data that must be gone. Only the train part is unlearned; the rest is just deleted from the store;
- `classes`  -> every **train** sample of those classes: class unlearning removes the class from the
  training data, while its val/test samples stay to show that the class is forgotten (a model
  retrained without the class gets them wrong).

The forget set's content hash is the SHA-256 over the sorted `sample_id,content_hash` lines, so it
changes if any member or any member's bytes change, and two resolutions of the same request against
the same version give the same hash.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from forgetflow.data.store import DatasetVersion
from forgetflow.requests.ledger import RequestStatus
from forgetflow.requests.pseudonyms import subject_token
from forgetflow.requests.schema import RequestError


@dataclass(frozen=True)
class RecordedRequest:
    """A request as the ledger holds it (subject targets are salted hashes)."""

    request_id: str
    kind: str
    goal: str
    targets: list
    new_labels: list | None
    fingerprint: str

    @classmethod
    def from_status(cls, status: RequestStatus) -> "RecordedRequest":
        entry = status.received
        if entry is None:
            raise RequestError(f"request {status.request_id} has no 'received' entry in the ledger", "run `forgetflow ledger verify`")
        return cls(status.request_id, entry["kind"], entry["goal"], list(entry["targets"]), entry.get("new_labels"), entry["fingerprint"])


@dataclass
class ForgetSet:
    request_id: str
    kind: str
    rows: pd.DataFrame  # manifest rows, sorted by sample_id
    content_hash: str
    new_labels: np.ndarray | None = None  # relabel: target class index per row

    @property
    def sample_ids(self) -> np.ndarray:
        return self.rows["sample_id"].to_numpy(np.int64)

    def split_counts(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self.rows["split"].value_counts().sort_index().items()}

    def summary(self) -> dict:
        """Counts and hash only: safe for logs, reports and MLflow."""
        return {"n_samples": int(len(self.rows)), "splits": self.split_counts(), "content_hash": self.content_hash}


def class_index(target, class_names: list[str]) -> int | None:
    """A class given by name or index -> its index, or None if the dataset has no such class."""
    if isinstance(target, bool):
        return None
    if isinstance(target, (int, np.integer)):
        return int(target) if 0 <= int(target) < len(class_names) else None
    if isinstance(target, str) and target in class_names:
        return class_names.index(target)
    return None


def manifest_subject_tokens(manifest: pd.DataFrame, salt: bytes) -> pd.Series:
    """The salted hash of every manifest row's subject (computed once per distinct subject)."""
    subjects = manifest["subject_id"].astype(str)
    tokens = {s: subject_token(salt, s) for s in subjects.unique()}
    return subjects.map(tokens)


def forget_set_hash(rows: pd.DataFrame) -> str:
    ordered = rows.sort_values("sample_id")
    lines = (ordered["sample_id"].astype(np.int64).astype(str) + "," + ordered["content_hash"].astype(str) + "\n").str.cat()
    return hashlib.sha256((lines or "").encode()).hexdigest()


def resolve(request: RecordedRequest, version: DatasetVersion, *, salt: bytes | None = None) -> ForgetSet:
    manifest = version.manifest
    new_labels = None
    if request.kind == "samples":
        wanted = pd.Series(request.targets, dtype="int64") if request.targets else pd.Series([], dtype="int64")
        rows = manifest[manifest["sample_id"].isin(wanted)]
        if request.new_labels is not None:
            mapping = {int(t): class_index(n, version.class_names) for t, n in zip(request.targets, request.new_labels)}
            new_labels = rows["sample_id"].map(mapping).astype("Int64")
    elif request.kind == "subjects":
        if salt is None:
            raise RequestError("resolving a subject request needs the workspace salt", "pass salt=workspace_salt(settings.state_dir)")
        rows = manifest[manifest_subject_tokens(manifest, salt).isin(set(request.targets))]
    elif request.kind == "classes":
        labels = {class_index(t, version.class_names) for t in request.targets} - {None}
        rows = manifest[(manifest["split"] == "train") & manifest["label"].isin(labels)]
    else:
        raise RequestError(f"unknown request kind {request.kind!r}", "the ledger entry is damaged; run `forgetflow ledger verify`")
    order = np.argsort(rows["sample_id"].to_numpy(), kind="stable")
    rows = rows.iloc[order].reset_index(drop=True)
    if new_labels is not None:
        new_labels = new_labels.iloc[order].to_numpy()
    return ForgetSet(request.request_id, request.kind, rows, forget_set_hash(rows), new_labels)
