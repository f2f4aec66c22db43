"""SalUn: forgets a class, keeps retain accuracy, and its saliency mask is a hard constraint."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from test_peers_setup import accuracy, assert_unchanged, state_snapshot, task  # noqa: F401  (task is a fixture)

from forgetflow.methods import _peer_utils as pu
from forgetflow.methods import salun

TINY = {"batch_size": 64, "epochs": 3, "lr": 0.02}


def test_salun_forgets_a_class_and_keeps_retain_accuracy(task):
    result = salun.INFO.fn(task.model, task.forget_class, retain=task.retain_class, config=TINY, progress=False)
    assert accuracy(result.model, task.forget_class) < 30  # from 100
    assert accuracy(result.model, task.retain_class) > 95
    assert result.seconds >= result.extra["mask_seconds"] > 0  # the mask is part of the reported time
    assert result.stopped_because == "epochs done" and len(result.log) == TINY["epochs"]


def test_salun_sample_request_does_not_raise_forget_accuracy_and_keeps_retain(task):
    before = accuracy(task.model, task.forget_random)
    result = salun.INFO.fn(task.model, task.forget_random, retain=task.retain_random, config=TINY, progress=False)
    assert accuracy(result.model, task.forget_random) <= before
    assert accuracy(result.model, task.retain_random) > 95


def test_saliency_mask_keeps_the_requested_fraction_of_weights(task):
    data = pu.Tensors(task.forget_class, "cpu")
    model = copy.deepcopy(task.model)
    masks = salun.saliency_mask(model, data, 0.3, 64, "cpu")
    total = sum(m.numel() for m in masks)
    assert abs(sum(int(m.sum()) for m in masks) - round(0.3 * total)) == 0
    assert all(p.grad is None for p in model.parameters())  # no gradient left behind


def test_frozen_weights_are_bit_identical_after_unlearning_with_weight_decay_and_momentum(task):
    config = {**TINY, "mask_fraction": 0.5, "weight_decay": 5e-2, "momentum": 0.9}
    result = salun.INFO.fn(task.model, task.forget_class, retain=task.retain_class, config=config, progress=False)
    masks = salun.saliency_mask(copy.deepcopy(task.model), pu.Tensors(task.forget_class, "cpu"), 0.5, salun.DEFAULTS["mask_batch_size"], "cpu")
    moved = 0
    for before, after, mask in zip(task.model.parameters(), result.model.parameters(), masks):
        assert torch.equal(after.detach()[~mask], before.detach()[~mask])
        moved += int((after.detach()[mask] != before.detach()[mask]).sum())
    assert moved > 0.5 * sum(int(m.sum()) for m in masks)  # the trainable half did train


def test_gradient_masking_alone_would_let_weight_decay_and_momentum_move_frozen_weights(task):
    """The control for the test above: without `enforce`, frozen weights drift, so the test can fail."""
    data = pu.Tensors(task.retain_class, "cpu")
    outcomes = {}
    for enforce in (False, True):
        model = copy.deepcopy(task.model).train()
        params = list(model.parameters())
        masks = salun.saliency_mask(model, pu.Tensors(task.forget_class, "cpu"), 0.5, 256, "cpu")
        constraint = salun.HardMask(params, masks)
        optimizer = torch.optim.SGD(params, lr=0.02, momentum=0.9, weight_decay=5e-2)
        for index in data.batches(64, torch.Generator().manual_seed(0)):
            loss = F.cross_entropy(model(data.x[index]), data.y[index])
            optimizer.zero_grad()
            loss.backward()
            constraint.mask_gradients()
            optimizer.step()
            if enforce:
                constraint.enforce(optimizer)
        outcomes[enforce] = all(torch.equal(p.detach()[~m], a[~m]) for p, m, a in zip(params, masks, constraint.anchors))
        if enforce:
            for p, m in zip(params, masks):
                assert torch.count_nonzero(optimizer.state[p]["momentum_buffer"][~m]) == 0
    assert outcomes == {False: False, True: True}


def test_salun_never_modifies_the_callers_model(task):
    snapshot = state_snapshot(task.model)
    salun.INFO.fn(task.model, task.forget_class, retain=task.retain_class, config=TINY, progress=False)
    assert_unchanged(task.model, snapshot)
    assert not task.model.training


def test_salun_honours_the_time_budget(task):
    result = salun.INFO.fn(task.model, task.forget_class, retain=task.retain_class, config={**TINY, "epochs": 50}, time_budget_s=0.0, progress=False)
    assert result.stopped_because == "time budget"
    assert len(result.log) == 1
