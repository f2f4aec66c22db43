"""The retrained reference: cached by (data md5, recipe hash, seed), never trained twice."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

import forgetflow.training as training
from forgetflow.data.sources import load_source
from forgetflow.data.store import LoadedSplit
from forgetflow.errors import DataIntegrityError
from forgetflow.evaluation.reference import ensure_reference, load_cached_reference, reference_key
from forgetflow.params import Params
from forgetflow.training import model_spec_for

PARAMS = Params.model_validate({"model": {"width": 4}, "train": {"epochs": 2, "batch_size": 64}})


@pytest.fixture(scope="module")
def data():
    raw = load_source("digits")
    split = lambda idx: LoadedSplit(raw.images[idx], raw.labels[idx], idx.astype(np.int64))  # noqa: E731
    spec = model_spec_for(PARAMS.model, {"image_shape": [8, 8, 1], "class_names": raw.class_names, "mean": [0.3], "std": [0.4]})
    return split(np.arange(0, 200)), split(np.arange(200, 260)), spec


@pytest.fixture
def count_trainings(monkeypatch):
    calls = []
    real = training.train_model

    def counting(*args, **kwargs):
        calls.append(kwargs.get("seed"))
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "train_model", counting)
    return calls


def make(state_dir, data, *, seed=1, md5="abc123", train=None):
    train_split, val, spec = data
    return ensure_reference(state_dir, PARAMS, data_md5=md5, train=train or train_split, val=val, spec=spec, seed=seed, progress=False)


def test_cache_hit_does_not_retrain(tmp_path, data, count_trainings):
    first = make(tmp_path, data)
    assert not first.cache_hit and count_trainings == [1]
    assert first.key == reference_key("abc123", PARAMS.recipe_hash(), 1)
    assert first.checkpoint == tmp_path / "references" / first.key / "checkpoint.pt"
    second = make(tmp_path, data)
    assert second.cache_hit and count_trainings == [1]
    assert second.seconds == pytest.approx(first.seconds)  # the retrain cost survives the cache
    for (name, a), b in zip(first.model.state_dict().items(), second.model.state_dict().values()):
        assert torch.equal(a, b), name
    # No temporary files left behind by the atomic writes.
    assert sorted(p.name for p in first.checkpoint.parent.iterdir()) == ["checkpoint.pt", "meta.json"]


def test_key_changes_with_seed_data_and_recipe(tmp_path, data, count_trainings):
    make(tmp_path, data, seed=1)
    make(tmp_path, data, seed=2)
    make(tmp_path, data, seed=1, md5="other")
    assert count_trainings == [1, 2, 1]
    other_recipe = Params.model_validate({"model": {"width": 4}, "train": {"epochs": 1}})
    assert other_recipe.recipe_hash() != PARAMS.recipe_hash()
    assert load_cached_reference(tmp_path, "abc123", other_recipe.recipe_hash(), 1) is None


def test_reference_is_deterministic_for_a_seed(tmp_path, data):
    a = make(tmp_path / "a", data, seed=7)
    b = make(tmp_path / "b", data, seed=7)
    for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()):
        assert torch.equal(x, y)


def test_same_key_with_other_samples_is_refused(tmp_path, data):
    make(tmp_path, data)
    train, _, _ = data
    fewer = LoadedSplit(train.images[:150], train.labels[:150], train.sample_ids[:150])
    with pytest.raises(DataIntegrityError, match="other samples"):
        make(tmp_path, data, train=fewer)


def test_concurrent_callers_train_once(tmp_path, data, count_trainings):
    results = []
    threads = [threading.Thread(target=lambda: results.append(make(tmp_path, data))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert count_trainings == [1]
    assert sorted(r.cache_hit for r in results) == [False, True]


def test_incomplete_cache_entry_is_retrained(tmp_path, data, count_trainings):
    first = make(tmp_path, data)
    (first.checkpoint.parent / "meta.json").unlink()  # as if the process died before the last write
    again = make(tmp_path, data)
    assert not again.cache_hit and count_trainings == [1, 1]


def test_reference_for_a_dataset_version_after_deletion(workspace, count_trainings):
    """End to end on a DVC-tracked version: delete samples, retrain once, reuse from the cache."""
    from forgetflow.data.importer import import_dataset
    from forgetflow.data.store import DatasetVersion
    from forgetflow.evaluation.reference import reference_for_version
    from forgetflow.settings import load_settings
    from forgetflow.workspace import init_workspace

    settings = load_settings(workspace)
    params = init_workspace(settings)
    info = import_dataset(settings, params, "digits")
    version = DatasetVersion(settings.data_dir / "digits")
    train_ids = version.load("train").sample_ids
    version.remove_samples(train_ids[:100])
    retained = DatasetVersion(settings.data_dir / "digits").load("train")
    md5_after = info.md5 + "-after"  # stands in for the DVC md5 of the new version
    reference = reference_for_version(settings, params, "digits", md5_after, progress=False)
    assert count_trainings == [1]  # evaluation.reference.seed default, not the base model's seed 0
    assert reference.meta["n_train"] == len(retained.labels) == len(train_ids) - 100
    assert reference.checkpoint.is_relative_to(settings.state_dir / "references")
    again = reference_for_version(settings, params, "digits", md5_after, progress=False)
    assert again.cache_hit and count_trainings == [1]


def test_prune_removes_references_of_older_data_versions(tmp_path, data):
    from forgetflow.evaluation.reference import cached_references, prune_references

    old = make(tmp_path, data, md5="v1")
    make(tmp_path, data, md5="v2")
    assert [m["data_md5"] for m in cached_references(tmp_path)] == ["v1", "v2"]
    assert prune_references(tmp_path, {"v2"}) == [old.key]
    assert not old.checkpoint.parent.exists()
    assert [m["data_md5"] for m in cached_references(tmp_path)] == ["v2"]
