"""SSD and label-free SSD: retraining-free forgetting that changes only the selected weights."""

from __future__ import annotations

import copy

import torch
from test_peers_setup import accuracy, assert_same_weights, assert_unchanged, state_snapshot, task  # noqa: F401  (task is a fixture)

from forgetflow.methods import _peer_utils as pu
from forgetflow.methods import ssd


def test_ssd_forgets_a_class_without_retraining(task):
    result = ssd.INFO.fn(task.model, task.forget_class, retain=task.retain_class, progress=False)
    assert accuracy(result.model, task.forget_class) < 20  # from 100
    assert accuracy(result.model, task.retain_class) > 95
    assert 0 < result.extra["selected_fraction"] < 0.5


def test_label_free_ssd_moves_forget_accuracy_down_and_keeps_retain(task):
    before = accuracy(task.model, task.forget_class)
    result = ssd.INFO_LABEL_FREE.fn(task.model, task.forget_class, retain=task.retain_class, progress=False)
    assert accuracy(result.model, task.forget_class) <= before - 10
    assert accuracy(result.model, task.retain_class) > 95


def test_label_free_importance_does_not_read_labels(task):
    data = pu.Tensors(task.forget_class, "cpu")
    scrambled = pu.Tensors(task.forget_class, "cpu")
    scrambled.y = (scrambled.y + 1) % 10
    a = ssd.importance(copy.deepcopy(task.model), data, 64, "cpu", label_free=True)
    b = ssd.importance(copy.deepcopy(task.model), scrambled, 64, "cpu", label_free=True)
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_ssd_changes_only_the_selected_weights_and_no_buffers(task):
    seed, config = 3, ssd.DEFAULTS
    result = ssd.INFO.fn(task.model, task.forget_class, retain=task.retain_class, seed=seed, progress=False)

    # Recompute the selection independently, in the same order the method draws its batches.
    expected = copy.deepcopy(task.model)
    generator = torch.Generator().manual_seed(seed)
    i_d = ssd.importance(expected, pu.Tensors(pu.concat(task.retain_class, task.forget_class), "cpu"), config["batch_size"], "cpu", False, generator)
    i_f = ssd.importance(expected, pu.Tensors(task.forget_class, "cpu"), config["batch_size"], "cpu", False, generator)
    selections = ssd.dampen(list(expected.parameters()), i_f, i_d, config["alpha"], config["dampening"])
    assert_same_weights(result.model, expected)
    assert sum(int(s.sum()) for s in selections) == result.extra["selected_weights"] > 0

    changed = 0
    for before, after, selected in zip(task.model.parameters(), result.model.parameters(), selections):
        assert torch.equal(after.detach()[~selected], before.detach()[~selected])
        shrunk = after.detach()[selected].abs() <= before.detach()[selected].abs()
        assert bool(shrunk.all())  # dampening only ever scales towards zero
        changed += int((after.detach() != before.detach()).sum())
    assert changed > 0
    for (name, before), after in zip(task.model.named_buffers(), result.model.buffers()):
        assert torch.equal(before, after), f"buffer {name} changed"


def test_ssd_never_modifies_the_callers_model(task):
    snapshot = state_snapshot(task.model)
    ssd.INFO.fn(task.model, task.forget_class, retain=task.retain_class, progress=False)
    ssd.INFO_LABEL_FREE.fn(task.model, task.forget_class, retain=task.retain_class, progress=False)
    assert_unchanged(task.model, snapshot)
