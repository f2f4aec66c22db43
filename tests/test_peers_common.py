"""What every peer method shares: registration, CPU determinism, the registry path, and clear errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from test_peers_setup import assert_same_weights, task  # noqa: F401  (task is a fixture)

from forgetflow.errors import ConfigError, ForgetflowError
from forgetflow.methods import bad_teacher, boundary_shrink, l1_sparse, salun, scrub, ssd
from forgetflow.methods.base import GOALS, KINDS, MissingInputError, UnsupportedRequestError

INFOS = [salun.INFO, scrub.INFO, scrub.INFO_LARGE, ssd.INFO, ssd.INFO_LABEL_FREE, l1_sparse.INFO, bad_teacher.INFO, boundary_shrink.INFO]
# Short runs, enough to exercise every random draw (orders, labels, subsets, initialisation).
QUICK = {
    "salun": {"epochs": 1, "batch_size": 64},
    "scrub": {"epochs": 2, "msteps": 1},
    "scrub_large": {"epochs": 2, "msteps": 1},
    "ssd": {},
    "lfssd": {},
    "l1_sparse": {"epochs": 2, "batch_size": 64, "alpha": 1e-3},
    "bad_teacher": {"epochs": 1, "batch_size": 64},
    "boundary_shrink": {"epochs": 2, "lr": 1e-3},
}


def run(info, task, seed=0, **kwargs):
    retain = None if info.name == "boundary_shrink" else task.retain_class
    return info.fn(task.model, task.forget_class, retain=retain, config=QUICK[info.name], seed=seed, progress=False, **kwargs)


@pytest.mark.parametrize("info", INFOS, ids=lambda i: i.name)
def test_registration_is_complete_and_consistent(info):
    assert info.kinds and set(info.kinds) <= set(KINDS)
    assert info.goals and set(info.goals) <= set(GOALS)
    assert "forget" in info.needs and set(info.needs) <= {"forget", "retain", "val", "stats"}
    assert set(info.search_space) <= set(info.defaults)
    assert all(isinstance(v, list) and v for v in info.search_space.values())
    assert info.paper and info.summary


def test_peer_methods_are_in_the_registry():
    from forgetflow.methods import get_method

    for info in INFOS:
        assert get_method(info.name) is info


@pytest.mark.parametrize("info", INFOS, ids=lambda i: i.name)
def test_cpu_runs_are_deterministic_for_a_seed(task, info):
    first, second = run(info, task, seed=5), run(info, task, seed=5)
    assert_same_weights(first.model, second.model)
    assert first.config == second.config == {**info.defaults, **QUICK[info.name]}
    assert first.seconds > 0


@pytest.mark.parametrize("info", INFOS, ids=lambda i: i.name)
def test_the_seed_matters(task, info):
    a, b = run(info, task, seed=1), run(info, task, seed=2)
    assert any(not torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))


def test_registry_unlearn_runs_a_peer_method_with_kind_and_goal(task):
    from forgetflow.methods import unlearn

    result = unlearn("salun", task.model, task.forget_class, retain=task.retain_class, config={"epochs": 1, "batch_size": 64}, kind="classes", goal="forget", progress=False)
    assert result.config["mask_fraction"] == 0.5 and result.config["epochs"] == 1
    with pytest.raises(UnsupportedRequestError):
        unlearn("boundary_shrink", task.model, task.forget_random, kind="samples", goal="forget", progress=False)


@pytest.mark.parametrize("info", [i for i in INFOS if "retain" in i.needs], ids=lambda i: i.name)
def test_missing_or_empty_inputs_are_clear_errors(task, info):
    with pytest.raises(MissingInputError, match="retain"):
        info.fn(task.model, task.forget_class, retain=None, progress=False)
    empty = dataclasses.replace(task.forget_class, images=task.forget_class.images[:0], labels=task.forget_class.labels[:0], sample_ids=task.forget_class.sample_ids[:0])
    with pytest.raises(MissingInputError, match="forget") as caught:
        info.fn(task.model, empty, retain=task.retain_class, progress=False)
    assert caught.value.hint


@pytest.mark.parametrize("info", INFOS, ids=lambda i: i.name)
def test_unsupported_goal_and_unknown_config_are_refused(task, info):
    retain = None if info.name == "boundary_shrink" else task.retain_class
    with pytest.raises(UnsupportedRequestError, match="relabel"):
        info.fn(task.model, task.forget_class, retain=retain, goal="relabel", progress=False)
    with pytest.raises(UnsupportedRequestError):
        info.fn(task.model, task.forget_class, retain=retain, kind="people", progress=False)
    with pytest.raises(ConfigError, match="lerning_rate"):
        info.fn(task.model, task.forget_class, retain=retain, config={"lerning_rate": 0.1}, progress=False)


def test_bad_values_are_config_errors(task):
    cases = [
        (salun.INFO, {"mask_fraction": 0.0}),
        (salun.INFO, {"epochs": 2.5}),
        (salun.INFO, {"lr": "fast"}),
        (scrub.INFO, {"optimizer": "rmsprop"}),
        (scrub.INFO, {"msteps": -1}),
        (ssd.INFO, {"alpha": -1.0}),
        (l1_sparse.INFO, {"no_l1_epochs": 10}),
        (bad_teacher.INFO, {"temperature": 0.0}),
    ]
    for info, config in cases:
        with pytest.raises(ConfigError):
            info.fn(task.model, task.forget_class, retain=task.retain_class, config=config, progress=False)


def test_boundary_shrink_refuses_sample_requests(task):
    with pytest.raises(UnsupportedRequestError, match="samples"):
        boundary_shrink.INFO.fn(task.model, task.forget_random, kind="samples", progress=False)
    with pytest.raises(UnsupportedRequestError, match="whole-class") as caught:
        boundary_shrink.INFO.fn(task.model, task.forget_random, retain=task.retain_random, progress=False)
    assert isinstance(caught.value, ForgetflowError) and caught.value.hint
    assert np.isin(task.forget_random.labels, task.retain_random.labels).all()
