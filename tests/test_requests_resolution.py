"""Resolution of recorded requests to concrete sample-ID sets, and the forget set's content hash."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from forgetflow.data.importer import import_dataset
from forgetflow.data.store import DatasetVersion
from forgetflow.requests.intake import open_ledger, submit
from forgetflow.requests.pseudonyms import workspace_salt
from forgetflow.requests.resolution import RecordedRequest, class_index, forget_set_hash, resolve
from forgetflow.requests.schema import RequestError
from forgetflow.settings import load_settings
from forgetflow.workspace import init_workspace


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    settings = load_settings(tmp_path_factory.mktemp("resolution-ws"))
    import_dataset(settings, init_workspace(settings), "digits")
    return settings, DatasetVersion(settings.data_dir / "digits")


def _recorded(settings, request_id, **request):
    request = {"reason": "test", "requested_by": "pytest", "request_id": request_id, **request}
    submit(settings, request)
    return RecordedRequest.from_status(open_ledger(settings).status(request_id))


def test_samples_resolve_as_given_sorted_and_deduplicated(workspace):
    settings, version = workspace
    m = version.manifest
    ids = m.loc[m["split"] == "train", "sample_id"].to_numpy()[[30, 2, 17]].tolist()
    forget = resolve(_recorded(settings, "s-1", kind="samples", ids=ids + [ids[0], 10**9]), version)
    assert forget.sample_ids.tolist() == sorted(ids)  # the unknown ID matches nothing (validation names it)
    assert forget.rows["label"].tolist() == m.set_index("sample_id").loc[sorted(ids), "label"].tolist()


def test_subjects_resolve_to_all_their_samples_in_every_split(workspace):
    settings, version = workspace
    m = version.manifest
    spread = m.groupby("subject_id")["split"].nunique()
    subject = spread[spread >= 2].index[0]  # a subject with samples in two splits
    forget = resolve(_recorded(settings, "subj-1", kind="subjects", ids=[subject, "nobody"]), version, salt=workspace_salt(settings.state_dir))
    expected = m.loc[m["subject_id"] == subject, "sample_id"].sort_values().tolist()
    assert forget.sample_ids.tolist() == expected and len(forget.split_counts()) >= 2


def test_subject_resolution_needs_the_salt(workspace):
    settings, version = workspace
    with pytest.raises(RequestError, match="salt"):
        resolve(_recorded(settings, "subj-2", kind="subjects", ids=["x"]), version)


def test_classes_resolve_to_their_train_samples_only(workspace):
    settings, version = workspace
    m = version.manifest
    forget = resolve(_recorded(settings, "c-1", kind="classes", ids=["3", 7]), version)
    expected = m.loc[(m["split"] == "train") & m["label"].isin([3, 7]), "sample_id"].sort_values().tolist()
    assert forget.sample_ids.tolist() == expected
    assert set(forget.split_counts()) == {"train"} and set(forget.rows["label"]) == {3, 7}


def test_class_index_accepts_names_and_indices():
    names = ["cat", "dog", "7"]
    assert class_index("dog", names) == 1 and class_index(2, names) == 2 and class_index("7", names) == 2
    assert class_index(3, names) is None and class_index("cow", names) is None and class_index(True, names) is None


def test_relabel_targets_follow_the_samples(workspace):
    settings, version = workspace
    ids = version.manifest.loc[version.manifest["split"] == "train", "sample_id"].to_numpy()[:3].tolist()
    forget = resolve(_recorded(settings, "r-1", kind="samples", goal="relabel", ids=[ids[2], ids[0], ids[1]], new_labels=["9", 1, 2]), version)
    assert forget.sample_ids.tolist() == ids and forget.new_labels.tolist() == [1, 2, 9]


def test_content_hash_is_sha256_over_sorted_id_hash_pairs(workspace):
    settings, version = workspace
    ids = version.manifest.loc[version.manifest["split"] == "train", "sample_id"].to_numpy()[:5].tolist()
    a = resolve(_recorded(settings, "h-1", kind="samples", ids=ids), version)
    b = resolve(_recorded(settings, "h-2", kind="samples", ids=ids[::-1], goal="misclassify"), version)
    rows = version.manifest.set_index("sample_id").loc[sorted(ids)]
    manual = hashlib.sha256("".join(f"{i},{h}\n" for i, h in zip(sorted(ids), rows["content_hash"])).encode()).hexdigest()
    assert a.content_hash == b.content_hash == manual
    changed = a.rows.copy()
    changed.loc[0, "content_hash"] = "0" * 64
    assert forget_set_hash(changed) != manual
    assert forget_set_hash(a.rows.iloc[:4]) != manual
    assert a.summary() == {"n_samples": 5, "splits": {"train": 5}, "content_hash": manual}
    assert a.sample_ids.dtype == np.int64
