"""Baselines (retrain, FT, GA, NegGrad+, RL): each moves the model the expected way on digits; CPU determinism."""

import pytest
import torch
import torch.nn.functional as F

from forgetflow.methods import unlearn
from forgetflow.methods._fixtures import make_splits, take, train_small
from forgetflow.training import evaluate, predict_logits


@pytest.fixture(scope="module")
def setup():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    splits = make_splits("digits", seed=0)
    model = train_small(splits, width=8, epochs=8).model
    forget_mask = splits.train.labels == 7
    yield splits, model, take(splits.train, forget_mask), take(splits.train, ~forget_mask)
    torch.set_num_threads(threads)


def forget_loss(model, split):
    return float(F.cross_entropy(predict_logits(model, split.images), torch.from_numpy(split.labels)))


def test_gradient_ascent_raises_forget_loss_and_lowers_its_accuracy(setup):
    splits, model, forget, _ = setup
    result = unlearn("gradient_ascent", model, forget, kind="classes", config={"lr": 1e-2, "epochs": 5}, progress=False)
    assert forget_loss(result.model, forget) > forget_loss(model, forget) + 1.0
    assert evaluate(result.model, forget)["accuracy"] < evaluate(model, forget)["accuracy"] - 20


def test_finetune_on_retain_keeps_retain_and_raises_forget_class_loss(setup):
    splits, model, forget, retain = setup
    result = unlearn("finetune", model, forget, retain=retain, kind="classes", config={"epochs": 3}, progress=False)
    assert forget_loss(result.model, forget) > forget_loss(model, forget)
    assert evaluate(result.model, retain)["accuracy"] >= evaluate(model, retain)["accuracy"] - 2


def test_neggrad_plus_forgets_while_keeping_retain(setup):
    splits, model, forget, retain = setup
    result = unlearn("neggrad_plus", model, forget, retain=retain, kind="classes", config={"epochs": 3}, progress=False)
    assert evaluate(result.model, forget)["accuracy"] < evaluate(model, forget)["accuracy"] - 20
    assert evaluate(result.model, retain)["accuracy"] >= evaluate(model, retain)["accuracy"] - 10


def test_random_labels_forget_the_class(setup):
    splits, model, forget, retain = setup
    result = unlearn("random_labels", model, forget, retain=retain, kind="classes", config={"exclude_true_label": True}, progress=False)
    assert evaluate(result.model, forget)["accuracy"] < evaluate(model, forget)["accuracy"] - 20
    assert evaluate(result.model, retain)["accuracy"] >= evaluate(model, retain)["accuracy"] - 10


def test_retrain_never_sees_the_forget_class(setup):
    splits, model, forget, retain = setup
    result = unlearn("retrain", model, forget, retain=retain, kind="classes", config={"epochs": 4}, progress=False)
    assert evaluate(result.model, forget)["accuracy"] == 0.0  # class 7 was never a training label
    assert evaluate(result.model, take(splits.test, splits.test.labels != 7))["accuracy"] > 80
    assert result.log and len(result.log) == 4


@pytest.mark.parametrize("name", ["finetune", "gradient_ascent", "neggrad_plus", "random_labels"])
def test_cpu_runs_are_deterministic_for_a_seed(setup, name):
    splits, model, forget, retain = setup
    run = lambda seed: unlearn(name, model, forget, retain=retain, kind="classes", config={"epochs": 1}, seed=seed, progress=False).model.state_dict()
    first, second, other = run(3), run(3), run(4)
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in first if first[k].is_floating_point())


def test_time_budget_stops_early(setup):
    splits, model, forget, retain = setup
    result = unlearn("finetune", model, forget, retain=retain, kind="classes", config={"epochs": 50}, time_budget_s=0.0, progress=False)
    assert "time budget" in result.stopped_because and len(result.log) < 50


@pytest.mark.parametrize("name", ["finetune", "neggrad_plus"])
def test_time_budget_is_checked_between_steps_not_only_between_epochs(setup, monkeypatch, name):
    """A budget that runs out mid-epoch stops the method after the current step (not the epoch)."""
    import importlib

    from forgetflow.methods import _loops
    from forgetflow.methods._fixtures import timer_spent_after

    module = importlib.import_module(f"forgetflow.methods.{name}")
    monkeypatch.setattr(module, "Timer", timer_spent_after(4))
    steps = []
    real = _loops.batch_tensors
    monkeypatch.setattr(_loops, "batch_tensors", lambda *a, **k: steps.append(1) or real(*a, **k))
    if name == "neggrad_plus":
        monkeypatch.setattr(module, "batch_tensors", _loops.batch_tensors)
    splits, model, forget, retain = setup
    result = unlearn(name, model, forget, retain=retain, kind="classes", config={"epochs": 50, "batch_size": 64}, time_budget_s=1.0, progress=False)
    batches_per_epoch = -(-len(retain.labels) // 64)
    per_step = 2 if name == "neggrad_plus" else 1  # NegGrad+ draws a retain and a forget batch per step
    assert len(steps) // per_step == 3 < batches_per_epoch
    assert len(result.log) == 1 and "in epoch 1 of 50" in result.stopped_because
