"""The DDP retrain: torchrun with 2 CPU processes (gloo) against the single-process recipe."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from forgetflow.data.sources import load_source
from forgetflow.data.store import LoadedSplit
from forgetflow.errors import ConfigError, WorkspaceError
from forgetflow.evaluation.config import evaluation_params
from forgetflow.evaluation.reference import ensure_reference
from forgetflow.models import load_checkpoint
from forgetflow.params import Params, TrainParams
from forgetflow.training import Shard, epoch_batches, evaluate, model_spec_for, predict_logits, train_model

DDP = {"reference": {"nproc_per_node": 2, "backend": "gloo"}}
PARAMS = Params.model_validate({"model": {"width": 8}, "train": {"epochs": 8, "batch_size": 64, "lr": 0.05}, "evaluation": DDP})
SEED = 1
# The gate's reference checks compare models at a granularity of 3 accuracy points
# (max_gap_* defaults); a DDP reference must agree with the single-process one at least that well.
# The two differ only by per-rank BatchNorm statistics (32 vs 64 samples) and summation order;
# 200 validation samples make one sample 0.5 points.
TOLERANCE = 3.0


@pytest.fixture(scope="module")
def data():
    raw = load_source("digits")
    split = lambda idx: LoadedSplit(raw.images[idx], raw.labels[idx], idx.astype(np.int64))  # noqa: E731
    spec = model_spec_for(PARAMS.model, {"image_shape": [8, 8, 1], "class_names": raw.class_names, "mean": [0.3], "std": [0.4]})
    return split(np.arange(0, 600)), split(np.arange(600, 800)), spec


@pytest.fixture(scope="module")
def ddp_reference(data, tmp_path_factory):
    """One torchrun launch (2 gloo processes) shared by the tests below."""
    train, val, spec = data
    state_dir = tmp_path_factory.mktemp("state")
    return state_dir, ensure_reference(state_dir, PARAMS, data_md5="v1", train=train, val=val, spec=spec, seed=SEED, progress=False)


def test_ranks_take_disjoint_slices_of_the_same_global_batches():
    recipe = TrainParams(batch_size=8, augment=True, hflip=True, crop_padding=1)
    single = list(epoch_batches(21, recipe, torch.Generator().manual_seed(0)))
    ranks = [list(epoch_batches(21, recipe, torch.Generator().manual_seed(0), Shard(rank=r, world_size=2))) for r in range(2)]
    assert [len(i) for i, _, _ in single] == [8, 8, 5]
    for (index, (shifts, flips), n), (i0, (s0, f0), n0), (i1, (s1, f1), n1) in zip(single, *ranks, strict=True):
        assert n == n0 == n1 == len(index)  # the global batch is the recipe's batch_size
        assert set(i0.tolist()).isdisjoint(i1.tolist()) and sorted(i0.tolist() + i1.tolist()) == sorted(index.tolist())
        assert abs(len(i0) - len(i1)) <= 1
        # Each sample gets the same augmentation as in the single-process run.
        assert torch.equal(shifts[0::2], s0) and torch.equal(shifts[1::2], s1)
        assert torch.equal(flips[0::2], f0) and torch.equal(flips[1::2], f1)


def test_ddp_retrain_matches_single_process_accuracy(data, ddp_reference):
    train, val, spec = data
    _, reference = ddp_reference
    single = train_model(spec, PARAMS.train, train, val, seed=SEED, progress=False)
    ddp_acc, single_acc = evaluate(reference.model, val)["accuracy"], evaluate(single.model, val)["accuracy"]
    assert single_acc > 75 and ddp_acc > 75  # both learned (chance is 10%)
    assert abs(ddp_acc - single_acc) <= TOLERANCE, (ddp_acc, single_acc)
    # Rank 0's history covers the whole global batch (losses all-reduced over both ranks).
    assert [row["epoch"] for row in reference.meta["history"]] == list(range(1, 9))
    assert reference.meta["history"][-1]["train_loss"] == pytest.approx(single.history[-1]["train_loss"], rel=0.25)


def test_ddp_reference_is_cached_and_records_the_world_size(data, ddp_reference):
    train, val, spec = data
    state_dir, reference = ddp_reference
    assert not reference.cache_hit
    meta = json.loads((reference.checkpoint.parent / "meta.json").read_text())
    assert meta["nproc_per_node"] == 2 and meta["backend"] == "gloo" and meta["n_train"] == 600
    assert meta["train_seconds"] > 0 and meta["ddp_wall_seconds"] >= meta["train_seconds"]
    model, payload = load_checkpoint(reference.checkpoint)
    assert payload["extra"]["role"] == "reference" and payload["extra"]["nproc_per_node"] == 2
    assert payload["layer_stats"] is not None  # computed in the parent, as for a single-process reference
    assert sorted(p.name for p in reference.checkpoint.parent.iterdir()) == ["checkpoint.pt", "meta.json"]  # work folder removed
    again = ensure_reference(state_dir, PARAMS, data_md5="v1", train=train, val=val, spec=spec, seed=SEED, progress=False)
    assert again.cache_hit and again.meta["nproc_per_node"] == 2
    assert torch.equal(predict_logits(again.model, val.images), predict_logits(model, val.images))


def test_failed_launch_names_the_rank_and_the_problem(data, tmp_path):
    train, val, spec = data
    missing = tmp_path / "no-such-dataset"
    with pytest.raises(WorkspaceError, match=r"rank \d of 2.*no dataset at .*no-such-dataset"):
        ensure_reference(tmp_path / "state", PARAMS, data_md5="v1", train=train, val=val, spec=spec, seed=SEED, progress=False, dataset_dir=missing)
    assert list((tmp_path / "state" / "references").glob("v1-*")) == []  # no half-made reference left


def test_a_dataset_folder_with_other_samples_is_refused_before_training(data, tmp_path):
    from forgetflow.data.store import write_dataset
    from forgetflow.errors import DataIntegrityError

    train, val, spec = data
    images, labels = np.concatenate([train.images, val.images]), np.concatenate([train.labels, val.labels])
    splits = np.array(["train"] * len(train.labels) + ["val"] * len(val.labels))
    version = write_dataset(tmp_path / "digits", name="digits", images=images, labels=labels, class_names=[str(i) for i in range(10)], splits=splits, subjects=np.arange(len(labels)).astype(str), shard_size=256, description={})
    fewer = LoadedSplit(train.images[:500], train.labels[:500], train.sample_ids[:500])  # e.g. loaded before a deletion
    folder_spec = model_spec_for(PARAMS.model, version.meta)
    with pytest.raises(DataIntegrityError, match="rank \\d of 2.*other samples than expected"):
        ensure_reference(tmp_path / "state", PARAMS, data_md5="v2", train=fewer, val=val, spec=folder_spec, seed=SEED, progress=False, dataset_dir=version.root)


def test_backend_and_environment_errors(monkeypatch):
    from forgetflow.distributed import distributed_env, resolve_backend

    assert resolve_backend("auto", "cpu") == "gloo" and resolve_backend("auto", "cuda:0") == "nccl"
    with pytest.raises(ConfigError, match="nccl needs CUDA"):
        resolve_backend("nccl", "cpu")
    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(ConfigError, match="not started by torchrun"):
        distributed_env()
    with pytest.raises(ConfigError, match="nproc_per_node"):
        evaluation_params(Params.model_validate({"evaluation": {"reference": {"nproc_per_node": 0}}}))
