"""NegGrad+ with forgetflow's held-out stop rule (goal forget, `heldout_stop: true`): it stops once
the forget set is no more accurate than held-out data of its classes, and not before."""

from __future__ import annotations

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
    assert accuracy(result.model, task.forget_random) <= target
    assert result.log[-1]["epoch"] < STRONG["epochs"]  # stopped early, not at the epoch cap


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
