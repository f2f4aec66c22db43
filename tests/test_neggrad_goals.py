"""NegGrad+ instance goals: misclassify and relabel with the goal stop rule; goal forget unchanged."""

import numpy as np
import pytest
import torch

from forgetflow.methods import get_method, unlearn
from forgetflow.methods._fixtures import make_splits, take, train_small
from forgetflow.methods.base import UnsupportedRequestError
from forgetflow.methods.neggrad_plus import DEFAULTS
from forgetflow.training import predict_logits

GOAL_CONFIG = {"beta": 0.7, "lr": 0.05, "epochs": 20}  # strong enough for the tiny digits model to flip within a few dozen steps


@pytest.fixture(scope="module")
def setup():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    splits = make_splits("digits", seed=0)
    model = train_small(splits, width=8, epochs=8).model
    rows = np.random.default_rng(0).choice(len(splits.train.labels), 8, replace=False)
    rest = np.setdiff1d(np.arange(len(splits.train.labels)), rows)
    retain = take(splits.train, np.sort(np.random.default_rng(1).choice(rest, 400, replace=False)))
    yield model, take(splits.train, rows), retain
    torch.set_num_threads(threads)


def predicted(model, split):
    return predict_logits(model, split.images).argmax(1).numpy()


def test_registration_serves_the_instance_goals():
    info = get_method("neggrad_plus")
    assert info.goals == ("forget", "misclassify", "relabel")
    # The paper-side defaults are unchanged; forgetflow's own rules are off by default.
    assert DEFAULTS == {"lr": 0.01, "epochs": 5, "batch_size": 64, "forget_batch_size": 64, "beta": 0.99, "momentum": 0.9, "weight_decay": 5e-4, "heldout_stop": False, "flip_to": "ascent"}
    for goal in ("forget", "misclassify", "relabel"):
        assert info.serves("samples", goal) and info.serves("subjects", goal)


def test_class_requests_keep_goal_forget_only(setup):
    model, forget, retain = setup
    with pytest.raises(UnsupportedRequestError):
        unlearn("neggrad_plus", model, forget, retain=retain, kind="classes", goal="misclassify", progress=False)


def test_misclassify_flips_every_forget_instance_and_stops(setup):
    model, forget, retain = setup
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert (predicted(model, forget) == forget.labels).all()  # the original knows them all
    result = unlearn("neggrad_plus", model, forget, retain=retain, goal="misclassify", config=GOAL_CONFIG, progress=False)
    assert result.stopped_because.startswith("all forget instances misclassified"), result.stopped_because
    assert result.extra["criterion_met"] and result.extra["goal_rate"] == 100.0
    assert (predicted(result.model, forget) != forget.labels).all()
    assert len(result.log) < GOAL_CONFIG["epochs"] and result.log[-1]["goal_rate"] == 100.0
    assert result.extra["steps"] == result.log[-1]["steps"]
    for key, value in model.state_dict().items():  # the caller's model is untouched
        assert torch.equal(before[key], value)


def test_relabel_predicts_every_new_label(setup):
    model, forget, retain = setup
    new = (forget.labels + 1 + np.arange(len(forget.labels)) % 9) % 10
    relabelled = type(forget)(forget.images, new, forget.sample_ids)  # the pipeline passes the new labels as labels
    result = unlearn("neggrad_plus", model, relabelled, retain=retain, goal="relabel", config=GOAL_CONFIG, progress=False)
    assert result.stopped_because.startswith("all forget instances predicted as their new labels"), result.stopped_because
    assert np.array_equal(predicted(result.model, forget), new)


def test_epoch_limit_and_time_budget_are_reported(setup):
    model, forget, retain = setup
    capped = unlearn("neggrad_plus", model, forget, retain=retain, goal="misclassify", config={"epochs": 1}, progress=False)
    assert not capped.extra["criterion_met"] and "1 epochs done" in capped.stopped_because and len(capped.log) == 1
    spent = unlearn("neggrad_plus", model, forget, retain=retain, goal="misclassify", config=GOAL_CONFIG, time_budget_s=0.0, progress=False)
    assert "time budget" in spent.stopped_because and spent.extra["steps"] == 0


def _neggrad_plus_before_goals(model, forget, retain, config, seed):
    """NegGrad+ as it was before the instance goals (goal forget), as `unlearn` would call it."""
    import copy

    import torch.nn.functional as F

    from forgetflow.device import seed_everything
    from forgetflow.methods._loops import batch_tensors, cycle, index_batches, sgd

    model = copy.deepcopy(model)
    seed_everything(seed)
    generator = torch.Generator().manual_seed(seed)
    optimizer = sgd(model, config)
    beta = config["beta"]
    log = []
    for epoch in range(config["epochs"]):
        model.train()
        forget_batches = cycle(index_batches(len(forget.labels), config["forget_batch_size"], generator))
        totals, steps = {"retain_loss": 0.0, "forget_loss": 0.0}, 0
        for index in index_batches(len(retain.labels), config["batch_size"], generator):
            xr, yr = batch_tensors(retain, index, "cpu")
            xf, yf = batch_tensors(forget, next(forget_batches), "cpu")
            loss_r = F.cross_entropy(model(xr).float(), yr)
            loss_f = F.cross_entropy(model(xf).float(), yf)
            optimizer.zero_grad(set_to_none=True)
            (beta * loss_r - (1 - beta) * loss_f).backward()
            optimizer.step()
            totals["retain_loss"] += float(loss_r.detach())
            totals["forget_loss"] += float(loss_f.detach())
            steps += 1
        log.append({"epoch": epoch + 1, **{k: v / max(steps, 1) for k, v in totals.items()}})
    return model, log


def test_goal_forget_is_unchanged(setup):
    """Goal forget runs the paper loop as before: all epochs, no stop rule, identical weights and log."""
    model, forget, retain = setup
    result = unlearn("neggrad_plus", model, forget, retain=retain, goal="forget", config={"epochs": 2}, seed=3, progress=False)
    assert result.stopped_because == "2 epochs done" and result.extra == {}
    assert [row["epoch"] for row in result.log] == [1, 2]
    reference, log = _neggrad_plus_before_goals(model, forget, retain, {**DEFAULTS, "epochs": 2}, seed=3)
    assert result.log == log
    expected = reference.state_dict()
    assert all(torch.equal(value, expected[key]) for key, value in result.model.state_dict().items())


@pytest.mark.parametrize("goal", ["misclassify", "relabel"])
def test_cpu_run_is_deterministic_for_a_seed(setup, goal):
    model, forget, retain = setup
    given = forget if goal == "misclassify" else type(forget)(forget.images, (forget.labels + 1) % 10, forget.sample_ids)
    run = lambda seed: unlearn("neggrad_plus", model, given, retain=retain, goal=goal, config={**GOAL_CONFIG, "epochs": 1}, seed=seed, progress=False)
    first, second, other = run(5), run(5), run(6)
    assert first.stopped_because == second.stopped_because and first.log == second.log
    a, b, c = (r.model.state_dict() for r in (first, second, other))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())
