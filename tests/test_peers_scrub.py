"""SCRUB: forgets a class with both presets, keeps retain accuracy, and never modifies its teacher."""

from __future__ import annotations

from test_peers_setup import accuracy, assert_unchanged, state_snapshot, task  # noqa: F401  (task is a fixture)

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
