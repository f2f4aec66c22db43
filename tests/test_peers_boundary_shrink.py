"""Boundary Shrink: class forgetting towards each sample's nearest wrong class."""

from __future__ import annotations

import torch
from test_peers_setup import FORGET_CLASS, accuracy, assert_unchanged, state_snapshot, task  # noqa: F401  (task is a fixture)

from forgetflow.methods import _peer_utils as pu
from forgetflow.methods import boundary_shrink

TINY = {"lr": 1e-3, "batch_size": 32}


def test_boundary_shrink_forgets_a_class_and_keeps_retain_accuracy(task):
    result = boundary_shrink.INFO.fn(task.model, task.forget_class, config=TINY, progress=False)
    assert accuracy(result.model, task.forget_class) < 20  # from 100
    assert accuracy(result.model, task.retain_class) > 85  # BatchNorm sees only forget batches, as in the paper
    assert 0 <= result.extra["attack_success"] <= 1


def test_nearest_wrong_labels_are_never_the_true_class(task):
    data = pu.Tensors(task.forget_class, "cpu")
    labels, crossed = boundary_shrink.nearest_wrong_labels(task.model, data, 0.1, 1, 64, "cpu")
    assert labels.shape == data.y.shape and bool((labels != FORGET_CLASS).all())
    assert 0 <= crossed <= 1


def test_fgsm_step_stays_within_the_bound_and_on_the_pixel_grid(task):
    data = pu.Tensors(task.forget_class, "cpu")
    x = data.x[:16]
    x_adv = boundary_shrink.perturb(task.model.eval(), x, data.y[:16], 0.1, 1, "cpu")
    assert float((x_adv - x).abs().max()) <= 0.1 + 1 / 255
    assert float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1
    assert torch.allclose(x_adv * 255, torch.round(x_adv * 255), atol=1e-4)
    assert not torch.equal(x_adv, x)


def test_boundary_shrink_never_modifies_the_callers_model(task):
    snapshot = state_snapshot(task.model)
    boundary_shrink.INFO.fn(task.model, task.forget_class, config=TINY, progress=False)
    assert_unchanged(task.model, snapshot)
