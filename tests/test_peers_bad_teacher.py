"""Bad Teacher: distillation from a competent teacher on retain and a random one on forget."""

from __future__ import annotations

import torch
from test_peers_setup import accuracy, assert_unchanged, state_snapshot, task  # noqa: F401  (task is a fixture)

from forgetflow.methods import _peer_utils as pu
from forgetflow.methods import bad_teacher

TINY = {"lr": 1e-3, "epochs": 5, "batch_size": 64}


def test_bad_teacher_forgets_a_class_and_keeps_retain_accuracy(task):
    result = bad_teacher.INFO.fn(task.model, task.forget_class, retain=task.retain_class, config=TINY, progress=False)
    assert accuracy(result.model, task.forget_class) < 20  # from 100
    assert accuracy(result.model, task.retain_class) > 95
    assert result.extra["retain_used"] == round(0.3 * len(task.retain_class.labels))


def test_incompetent_teacher_is_random_seeded_and_keeps_input_normalisation(task):
    a = pu.random_init_copy(task.model, "cpu", seed=1)
    b = pu.random_init_copy(task.model, "cpu", seed=1)
    c = pu.random_init_copy(task.model, "cpu", seed=2)
    weights = lambda m: torch.cat([p.flatten() for p in m.parameters()])  # noqa: E731
    assert torch.equal(weights(a), weights(b)) and not torch.equal(weights(a), weights(c))
    assert not torch.equal(weights(a), weights(task.model))
    assert accuracy(a, task.test) < 40  # incompetent
    assert torch.equal(a.normalize.mean, task.model.normalize.mean) and torch.equal(a.normalize.std, task.model.normalize.std)


def test_bad_teacher_never_modifies_the_callers_model(task):
    snapshot = state_snapshot(task.model)
    bad_teacher.INFO.fn(task.model, task.forget_class, retain=task.retain_class, config=TINY, progress=False)
    assert_unchanged(task.model, snapshot)
