"""l1-sparse: retain fine-tuning with a linearly decaying l1 penalty."""

from __future__ import annotations

import pytest
from test_peers_setup import accuracy, assert_unchanged, state_snapshot, task  # noqa: F401  (task is a fixture)

from forgetflow.methods import l1_sparse

TINY = {"alpha": 5e-3, "lr": 0.05, "batch_size": 64}


def test_penalty_decays_linearly_to_zero():
    weights = [l1_sparse.l1_weight(1.0, epoch, 10, 2) for epoch in range(10)]
    assert weights[:8] == pytest.approx([1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125])
    assert weights[8:] == [0.0, 0.0]


def test_l1_sparse_forgets_a_class_and_keeps_retain_accuracy(task):
    result = l1_sparse.INFO.fn(task.model, task.forget_class, retain=task.retain_class, config=TINY, progress=False)
    assert accuracy(result.model, task.forget_class) < 20  # from 100
    assert accuracy(result.model, task.retain_class) > 95
    assert [row["l1_weight"] for row in result.log][0] == TINY["alpha"]
    assert result.log[-1]["l1_weight"] == pytest.approx(TINY["alpha"] / 10)


def test_the_l1_penalty_shrinks_the_weights(task):
    plain = l1_sparse.INFO.fn(task.model, task.forget_class, retain=task.retain_class, config={**TINY, "alpha": 0.0}, progress=False)
    sparse = l1_sparse.INFO.fn(task.model, task.forget_class, retain=task.retain_class, config=TINY, progress=False)
    assert float(l1_sparse.l1_norm(sparse.model).detach()) < 0.9 * float(l1_sparse.l1_norm(plain.model).detach())


def test_l1_sparse_never_modifies_the_callers_model(task):
    snapshot = state_snapshot(task.model)
    l1_sparse.INFO.fn(task.model, task.forget_class, retain=task.retain_class, config={**TINY, "epochs": 1}, progress=False)
    assert_unchanged(task.model, snapshot)
