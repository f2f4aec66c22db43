"""forgetflow's repair step (`repair_epochs`, any method with goal forget): fine-tuning on the
retained data with a guard on the forget set, so retain accuracy comes back and the forgetting
stays."""

from __future__ import annotations

import pytest
import torch
from test_neggrad_heldout import STRONG, heldout_target
from test_peers_setup import accuracy, task  # noqa: F401  (task is a fixture)

from forgetflow.errors import ConfigError
from forgetflow.methods import unlearn
from forgetflow.methods.base import MissingInputError


def test_class_repair_restores_retain_accuracy_and_keeps_the_class_forgotten(task):
    kwargs = dict(retain=task.retain_class, val=task.test, kind="classes", progress=False, seed=0)
    plain = unlearn("svd_projection", task.model, task.forget_class, config={}, **kwargs)
    repaired = unlearn("svd_projection", task.model, task.forget_class, config={"repair_epochs": 2}, **kwargs)
    assert accuracy(plain.model, task.forget_class) <= 5.0  # the method forgot the class
    assert accuracy(repaired.model, task.forget_class) <= 5.0  # and the repair did not bring it back
    assert accuracy(repaired.model, task.retain_class) >= accuracy(plain.model, task.retain_class)
    assert repaired.config["repair_epochs"] == 2 and "repair: 2 repair epoch(s) done" in repaired.stopped_because
    assert [row["repair_epoch"] for row in repaired.log if "repair_epoch" in row] == [1, 2]
    assert repaired.seconds > 0


def test_sample_repair_holds_the_forget_set_at_the_heldout_level(task):
    kwargs = dict(retain=task.retain_random, val=task.test, progress=False, seed=0)
    harsh = {**STRONG, "heldout_stop": False, "epochs": 3}  # past the held-out level, at a cost to retain
    plain = unlearn("neggrad_plus", task.model, task.forget_random, config=harsh, **kwargs)
    repaired = unlearn("neggrad_plus", task.model, task.forget_random, config={**harsh, "repair_epochs": 3}, **kwargs)
    target = heldout_target(task.model, task.forget_random, task.test)
    assert accuracy(plain.model, task.retain_random) < 100.0  # the ascent cost retain accuracy
    assert accuracy(repaired.model, task.retain_random) > accuracy(plain.model, task.retain_random)
    # The guard: the repair does not bring the forget set back to what the original remembered.
    assert accuracy(repaired.model, task.forget_random) <= target + 100.0 / len(task.forget_random.labels) * 3
    assert accuracy(task.model, task.forget_random) > accuracy(repaired.model, task.forget_random)
    rows = [row for row in repaired.log if "repair_epoch" in row]
    assert len(rows) == 3 and all("ascent_steps" in row and "forget_accuracy" in row for row in rows)


def test_repair_is_deterministic(task):
    runs = [unlearn("svd_projection", task.model, task.forget_class, retain=task.retain_class, val=task.test, kind="classes", config={"repair_epochs": 1}, progress=False, seed=3) for _ in range(2)]
    for a, b in zip(runs[0].model.state_dict().values(), runs[1].model.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("value", [-1, 1.5, True, "2"])
def test_repair_epochs_must_be_a_whole_number(task, value):
    with pytest.raises(ConfigError, match="repair_epochs must be a whole number"):
        unlearn("finetune", task.model, task.forget_random, retain=task.retain_random, config={"repair_epochs": value}, progress=False)


def test_repair_refuses_instance_goals_and_missing_inputs(task):
    with pytest.raises(ConfigError, match="serves goal forget only"):
        unlearn("neggrad_plus", task.model, task.forget_random, retain=task.retain_random, goal="misclassify", config={"repair_epochs": 1}, progress=False)
    with pytest.raises(MissingInputError, match="validation split"):  # the sample guard needs held-out data
        unlearn("finetune", task.model, task.forget_random, retain=task.retain_random, config={"repair_epochs": 1, "epochs": 1}, progress=False)


def test_a_ladder_rung_records_its_repair(task):
    from forgetflow.ladder import GateVerdict, Rung, climb

    rung = Rung(method="svd_projection", config={"repair_epochs": 1})
    climbed = climb([rung], task.model, task.forget_class, gate=lambda m, s: GateVerdict(True, "ok"), retain=task.retain_class, val=task.test, kind="classes", progress=False)
    assert climbed.passed and climbed.outcomes[0].config["repair_epochs"] == 1
    assert "repair" in climbed.outcomes[0].stopped_because
