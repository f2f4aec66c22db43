"""NegGrad+ with forgetflow's held-out stop rule (goal forget, `heldout_stop: true`): it stops once
the forget set is no more accurate than held-out data of its classes, and not before."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_peers_setup import accuracy, task  # noqa: F401  (task is a fixture)

from forgetflow.data.store import LoadedSplit
from forgetflow.methods import unlearn
from forgetflow.methods.base import MissingInputError

STRONG = {"beta": 0.5, "lr": 0.05, "epochs": 30, "heldout_stop": True}


def heldout_target(model, forget: LoadedSplit, val: LoadedSplit) -> float:
    """The rule's target, computed independently: val accuracy per class weighted by the forget mix."""
    from forgetflow.training import predict_logits

    correct = predict_logits(model, val.images).numpy().argmax(1) == val.labels
    labels, counts = np.unique(forget.labels, return_counts=True)
    return 100.0 * sum(c * correct[val.labels == label].mean() for label, c in zip(labels, counts)) / counts.sum()


def test_heldout_stop_ends_when_the_forget_set_looks_unseen(task):
    target = heldout_target(task.model, task.forget_random, task.test)
    assert accuracy(task.model, task.forget_random) > target  # memorised: there is something to forget
    result = unlearn("neggrad_plus", task.model, task.forget_random, retain=task.retain_random, val=task.test, config=STRONG, progress=False)
    assert result.stopped_because.startswith("forget accuracy") and "reached the held-out accuracy" in result.stopped_because
    assert abs(result.extra["heldout_target"] - target) < 1e-6
    n = len(task.forget_random.labels)
    errors = round(n * (100.0 - accuracy(result.model, task.forget_random)) / 100.0)
    assert errors >= math.floor(n * (100.0 - target) / 100.0) >= 1  # as many errors as an unseen set is expected to have
    assert result.log[-1]["epoch"] < STRONG["epochs"]  # stopped early, not at the epoch cap


def test_a_request_already_at_the_heldout_level_is_left_alone(task):
    """Rounding down: a small set expected to have fewer than one error needs no unlearning."""
    target = heldout_target(task.model, task.forget_random, task.test)
    n = max(1, int(0.9 * 100.0 / (100.0 - target)))  # expected errors n * (1 - target) < 1
    few = LoadedSplit(task.forget_random.images[:n], task.forget_random.labels[:n], task.forget_random.sample_ids[:n])
    assert accuracy(task.model, few) == 100.0
    result = unlearn("neggrad_plus", task.model, few, retain=task.retain_random, val=task.test, config=STRONG, progress=False)
    assert result.stopped_because.startswith("nothing to unlearn") and result.log == []
    assert all(torch.equal(a, b) for a, b in zip(result.model.state_dict().values(), task.model.state_dict().values()))


def test_without_the_rule_the_same_run_goes_past_the_target(task):
    target = heldout_target(task.model, task.forget_random, task.test)
    config = {**STRONG, "heldout_stop": False, "epochs": 3}
    result = unlearn("neggrad_plus", task.model, task.forget_random, retain=task.retain_random, val=task.test, config=config, progress=False)
    assert result.stopped_because == "epochs done" or "epoch" in result.stopped_because
    assert len(result.log) == 3 and accuracy(result.model, task.forget_random) < target  # over-forgets: why the rule exists


def test_heldout_stop_is_deterministic_and_needs_val(task):
    a = unlearn("neggrad_plus", task.model, task.forget_random, retain=task.retain_random, val=task.test, config=STRONG, seed=3, progress=False)
    b = unlearn("neggrad_plus", task.model, task.forget_random, retain=task.retain_random, val=task.test, config=STRONG, seed=3, progress=False)
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))
    with pytest.raises(MissingInputError, match="validation split"):
        unlearn("neggrad_plus", task.model, task.forget_random, retain=task.retain_random, config=STRONG, progress=False)


def test_misclassify_towards_the_runner_up_flips_every_instance_and_stops(task):
    from forgetflow.errors import ConfigError

    few = LoadedSplit(task.forget_random.images[:8], task.forget_random.labels[:8], task.forget_random.sample_ids[:8])
    config = {"flip_to": "runner_up", "beta": 0.7, "lr": 0.05, "epochs": 20}
    result = unlearn("neggrad_plus", task.model, few, retain=task.retain_random, goal="misclassify", config=config, progress=False)
    assert result.stopped_because.startswith("all forget instances misclassified")
    assert accuracy(result.model, few) == 0.0
    with pytest.raises(ConfigError, match="flip_to"):
        unlearn("neggrad_plus", task.model, few, retain=task.retain_random, goal="misclassify", config={"flip_to": "sideways"}, progress=False)


def test_best_threshold_separates_members_from_unseen():
    from forgetflow.methods._heldout import _best_threshold

    members = np.array([0.99, 0.98, 0.97, 0.995])
    unseen = np.array([0.2, 0.5, 0.9, 0.96])
    threshold = _best_threshold(members, unseen)
    assert 0.96 < threshold <= 0.97  # every unseen below, every member at or above
    assert 0.5 <= _best_threshold(np.array([0.9]), np.array([0.5])) <= 0.9


def test_confidence_match_goes_on_past_the_accuracy_level(task):
    """`heldout_stop: confidence` stops only once the forget set is also as often below the
    confidence attack's threshold as unseen data: never earlier than the accuracy rule."""
    by_accuracy = unlearn("neggrad_plus", task.model, task.forget_random, retain=task.retain_random, val=task.test, config=STRONG, progress=False)
    by_confidence = unlearn("neggrad_plus", task.model, task.forget_random, retain=task.retain_random, val=task.test, config={**STRONG, "heldout_stop": "confidence"}, progress=False)
    assert "membership threshold" in by_confidence.stopped_because or "epochs done" in by_confidence.stopped_because
    steps = lambda r: sum(1 for _ in r.log)  # noqa: E731
    assert steps(by_confidence) >= steps(by_accuracy)
    assert accuracy(by_confidence.model, task.forget_random) <= accuracy(by_accuracy.model, task.forget_random)


def test_confidence_match_needs_retain_and_a_known_mode(task):
    from forgetflow.errors import ConfigError

    with pytest.raises(ConfigError, match="heldout_stop"):
        unlearn("neggrad_plus", task.model, task.forget_random, retain=task.retain_random, val=task.test, config={**STRONG, "heldout_stop": "loss"}, progress=False)
