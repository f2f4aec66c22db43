"""A tiny digits task shared by the peer-method tests (imported by tests/test_peers_*.py), and its sanity checks.

One narrow CNN trained for a few epochs on sklearn digits; forget sets for a whole class (digit 3)
and for 10 % random samples, each with its complementary retain set.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from forgetflow.data.sources import load_source
from forgetflow.data.store import LoadedSplit
from forgetflow.models import ModelSpec
from forgetflow.params import TrainParams
from forgetflow.training import evaluate, train_model

FORGET_CLASS = 3


@dataclass
class Task:
    model: torch.nn.Module
    train: LoadedSplit
    test: LoadedSplit
    forget_class: LoadedSplit
    retain_class: LoadedSplit
    forget_random: LoadedSplit
    retain_random: LoadedSplit


def _take(images, labels, ids, index) -> LoadedSplit:
    return LoadedSplit(images=images[index], labels=labels[index], sample_ids=ids[index])


def build_task(epochs: int = 6, seed: int = 0) -> Task:
    torch.set_num_threads(1)
    raw = load_source("digits")
    ids = np.arange(len(raw.labels), dtype=np.int64)
    order = np.random.default_rng(seed).permutation(len(raw.labels))
    test_idx, train_idx = np.sort(order[:360]), np.sort(order[360:])
    train = _take(raw.images, raw.labels, ids, train_idx)
    test = _take(raw.images, raw.labels, ids, test_idx)
    in_class = train.labels == FORGET_CLASS
    rng = np.random.default_rng(seed + 1)
    random_pick = np.zeros(len(train.labels), dtype=bool)
    random_pick[rng.choice(len(train.labels), size=len(train.labels) // 10, replace=False)] = True
    spec = ModelSpec(arch="small_cnn", in_channels=1, num_classes=10, image_size=8, width=8, mean=[0.3], std=[0.4])
    recipe = TrainParams(optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4, schedule="cosine", epochs=epochs, batch_size=32, seed=seed)
    model = train_model(spec, recipe, train, device="cpu", seed=seed, progress=False).model
    split = lambda mask: _take(train.images, train.labels, train.sample_ids, np.flatnonzero(mask))  # noqa: E731
    return Task(model, train, test, split(in_class), split(~in_class), split(random_pick), split(~random_pick))


def accuracy(model: torch.nn.Module, split: LoadedSplit) -> float:
    return evaluate(model, split)["accuracy"]


def state_snapshot(model: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_unchanged(model: torch.nn.Module, snapshot: dict) -> None:
    state = model.state_dict()
    assert state.keys() == snapshot.keys()
    for key, value in snapshot.items():
        assert torch.equal(state[key], value), f"{key} changed"


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    assert_unchanged(a, state_snapshot(b))


@pytest.fixture(scope="module")
def task() -> Task:
    return build_task()


def test_base_model_learns_digits(task):
    assert accuracy(task.model, task.test) > 90
    assert accuracy(task.model, task.forget_class) > 90
    assert accuracy(task.model, task.forget_random) > 90


def test_forget_and_retain_sets_partition_the_training_data(task):
    for forget, retain in ((task.forget_class, task.retain_class), (task.forget_random, task.retain_random)):
        assert not set(forget.sample_ids) & set(retain.sample_ids)
        assert len(forget.labels) + len(retain.labels) == len(task.train.labels)
    assert set(task.forget_class.labels) == {FORGET_CLASS}
    assert FORGET_CLASS not in set(task.retain_class.labels)


def test_training_is_deterministic_so_tasks_are_reproducible(task):
    again = build_task()
    assert_same_weights(copy.deepcopy(again.model), task.model)
