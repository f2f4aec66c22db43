"""SCRUB: forgets a class with both presets, keeps retain accuracy, and never modifies its teacher."""

from __future__ import annotations

import torch
from test_peers_setup import FORGET_CLASS, accuracy, assert_unchanged, state_snapshot, task  # noqa: F401  (task is a fixture)

from forgetflow.data.store import LoadedSplit
from forgetflow.methods import _peer_utils as pu
from forgetflow.methods import scrub

TINY = {"lr": 2e-3, "epochs": 4, "msteps": 2, "weight_decay": 0.0}


def test_scrub_forgets_a_class_and_keeps_retain_accuracy(task):
    result = scrub.INFO.fn(task.model, task.forget_class, retain=task.retain_class, config=TINY, progress=False)
    assert accuracy(result.model, task.forget_class) < 20  # from 100
    assert accuracy(result.model, task.retain_class) > 95
    assert [row["epoch"] for row in result.log] == [1, 2, 3, 4]
    assert ["forget_kl" in row for row in result.log] == [True, True, False, False]  # max-steps only for msteps epochs
    assert result.log[0]["forget_kl"] >= 0


def test_scrub_large_scale_preset_runs_with_its_paper_defaults(task):
    assert scrub.INFO_LARGE.defaults["optimizer"] == "sgd" and scrub.INFO_LARGE.defaults["msteps"] == 2
    result = scrub.INFO_LARGE.fn(task.model, task.forget_class, retain=task.retain_class, progress=False)
    assert result.config == scrub.PRESETS["large"]
    assert accuracy(result.model, task.forget_class) < 50
    assert accuracy(result.model, task.retain_class) > 75


def test_scrub_small_preset_defaults_are_the_paper_values():
    assert scrub.INFO.defaults == scrub.PRESETS["small"]
    assert (scrub.INFO.defaults["optimizer"], scrub.INFO.defaults["msteps"], scrub.INFO.defaults["temperature"]) == ("adam", 3, 2.0)


def test_scrub_never_modifies_its_teacher_or_the_callers_model(task, monkeypatch):
    teachers = []
    real_frozen_copy = pu.frozen_copy

    def spy(model, device):
        teachers.append(real_frozen_copy(model, device))
        return teachers[-1]

    monkeypatch.setattr(pu, "frozen_copy", spy)
    snapshot = state_snapshot(task.model)
    result = scrub.INFO.fn(task.model, task.forget_class, retain=task.retain_class, config=TINY, progress=False)
    assert len(teachers) == 1
    teacher = teachers[0]
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    assert_unchanged(teacher, snapshot)  # weights and BatchNorm statistics of the teacher are the original's
    assert_unchanged(task.model, snapshot)
    assert result.model is not task.model


def test_scrub_rewind_returns_the_epoch_closest_to_the_heldout_error(task):
    """SCRUB+R: a checkpoint per epoch (and the start); the one whose forget error is closest to the
    validation error (class mix of the forget set) is returned, and the log shows it was."""
    config = {"lr": 5e-3, "epochs": 4, "msteps": 3, "weight_decay": 0.0}
    result = scrub.INFO_REWIND.fn(task.model, task.forget_random, retain=task.retain_random, val=task.test, config=config, progress=False)
    errors = {0: 100.0 - accuracy(task.model, task.forget_random), **{row["epoch"]: row["forget_error"] for row in result.log}}
    target = result.extra["reference_error"]
    best = min(errors, key=lambda e: (abs(errors[e] - target), -e))
    assert result.extra["rewind_epoch"] == best and f"rewound to epoch {best}" in result.stopped_because
    assert abs(100.0 - accuracy(result.model, task.forget_random) - errors[best]) < 1e-3  # the returned weights are that checkpoint's
    again = scrub.INFO_REWIND.fn(task.model, task.forget_random, retain=task.retain_random, val=task.test, config=config, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(result.model.state_dict().values(), again.model.state_dict().values()))


def test_scrub_rewind_needs_heldout_data_of_the_forget_classes(task):
    import pytest

    from forgetflow.methods.base import MissingInputError

    no_class = LoadedSplit(task.test.images[task.test.labels != FORGET_CLASS], task.test.labels[task.test.labels != FORGET_CLASS], task.test.sample_ids[task.test.labels != FORGET_CLASS])
    with pytest.raises(MissingInputError, match="validation split has no sample"):
        scrub.INFO_REWIND.fn(task.model, task.forget_class, retain=task.retain_class, val=no_class, config={"epochs": 1}, progress=False)
