"""L2UL (Cha et al.): adversarial examples, MAS importance, the stopping rule, relabel, continual."""

import numpy as np
import pytest
import torch

from forgetflow.methods import unlearn
from forgetflow.methods._fixtures import make_splits, take, train_small
from forgetflow.methods.base import MissingInputError
from forgetflow.methods.l2ul import adversarial_examples, draw_targets, mas_importance, unlearn_sequence
from forgetflow.training import evaluate, to_tensor

# a larger lr than the paper's 1e-3 so the tiny test model flips within a few steps
FAST = {"adv_per_instance": 2, "pgd_iters": 20, "lr": 5e-2, "max_epochs": 300, "eps": 2.0}


@pytest.fixture(scope="module")
def setup():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    splits = make_splits("digits", seed=0)
    model = train_small(splits, width=8, epochs=8).model
    rows = np.random.default_rng(0).choice(len(splits.train.labels), 8, replace=False)
    yield splits, model, take(splits.train, rows)
    torch.set_num_threads(threads)


def test_adversarial_examples_stay_in_ball_and_pixel_range(setup):
    _, model, forget = setup
    x, y = to_tensor(forget.images), torch.from_numpy(forget.labels)
    config = {"eps": 1.5, "eps_step": 0.1, "pgd_iters": 15, "adv_per_instance": 3, "adv_batch_size": 256, "target_mode": "uniform"}
    x_adv, targets, sources = adversarial_examples(model, x, y, config, torch.Generator().manual_seed(0), "cpu")
    assert x_adv.shape == (3 * len(y), *x.shape[1:])
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    norms = (x_adv - x[sources]).flatten(1).norm(dim=1)
    assert float(norms.max()) <= 1.5 + 1e-4
    assert bool((targets != y[sources]).all())  # uniform targets never hit the true class
    with torch.no_grad():
        assert (model(x_adv).argmax(1) == targets).float().mean() > 0.5  # the attack works


def test_released_target_mode_reproduces_the_code():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(10).repeat(200)
    targets = draw_targets(labels, 10, "released", g)
    assert bool((targets[labels == 5] == 5).any())  # the code's fallback C // 2 targets class 5 itself
    assert bool((targets[labels != 5] != labels[labels != 5]).all())
    uniform = draw_targets(labels, 10, "uniform", g)
    assert bool((uniform != labels).all())


def test_importance_is_per_tensor_in_unit_interval(setup):
    _, model, forget = setup
    buffers = {k: v.clone() for k, v in model.state_dict().items()}
    importance = mas_importance(model, to_tensor(forget.images), 32, "cpu")
    assert all(torch.equal(buffers[k], v) for k, v in model.state_dict().items())  # BN statistics untouched
    assert set(importance) == {name for name, _ in model.named_parameters()}
    for name, value in importance.items():
        assert float(value.min()) >= 0.0 and float(value.max()) <= 1.0, name
        if float(value.max()) > 0:  # min-max normalised per tensor: the largest entry is 1
            assert abs(float(value.max()) - 1.0) < 1e-6, name


def test_misclassify_drives_forget_accuracy_to_zero(setup):
    splits, model, forget = setup
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = unlearn("l2ul", model, forget, goal="misclassify", config=FAST, progress=False)
    assert result.extra["criterion_met"], result.stopped_because
    assert evaluate(result.model, forget)["accuracy"] == 0.0
    assert result.extra["adversarial_examples"] == 2 * len(forget.labels)
    for key, value in model.state_dict().items():  # the caller's model is untouched
        assert torch.equal(before[key], value)


def test_relabel_predicts_the_new_labels(setup):
    _, model, forget = setup
    new = (forget.labels + 1) % 10
    result = unlearn("l2ul", model, forget, goal="relabel", config={**FAST, "lr": 1e-2, "new_labels": new.tolist()}, progress=False)
    assert result.extra["criterion_met"], result.stopped_because
    with torch.no_grad():
        assert np.array_equal(result.model(to_tensor(forget.images)).argmax(1).numpy(), new)
    with pytest.raises(MissingInputError, match="new_labels"):
        unlearn("l2ul", model, forget, goal="relabel", config=FAST, progress=False)


def test_continual_requests_start_from_the_previous_model(setup):
    splits, model, _ = setup
    rows = np.random.default_rng(1).choice(len(splits.train.labels), 8, replace=False)
    requests = [take(splits.train, rows[:4]), take(splits.train, rows[4:])]
    results = unlearn_sequence(model, requests, goal="misclassify", config=FAST, progress=False)
    assert len(results) == 2 and all(r.extra["criterion_met"] for r in results)
    assert len(results[1].extra["accuracy_on_earlier_requests"]) == 2
    assert results[1].extra["accuracy_on_earlier_requests"][1] == 0.0


def test_cpu_run_is_deterministic_for_a_seed(setup):
    _, model, forget = setup
    run = lambda seed: unlearn("l2ul", model, forget, goal="misclassify", config={**FAST, "max_epochs": 2}, seed=seed, progress=False).model.state_dict()
    first, second, other = run(5), run(5), run(6)
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in first if first[k].is_floating_point())


def test_time_budget_caps_the_adversarial_set_and_keeps_one_round(setup):
    """A budget spent while attacking stops building rounds (one is always kept) and no step runs."""
    _, model, forget = setup
    result = unlearn("l2ul", model, forget, goal="misclassify", config={**FAST, "adv_per_instance": 5}, time_budget_s=1e-6, progress=False)
    assert result.extra["adversarial_rounds"] == 1 and result.extra["adversarial_examples"] == len(forget.labels)
    assert result.extra["steps"] == 0 and "time budget" in result.stopped_because
    full = unlearn("l2ul", model, forget, goal="misclassify", config={**FAST, "adv_per_instance": 5}, progress=False)
    assert full.extra["adversarial_rounds"] == 5


def test_default_pgd_step_keeps_the_paper_path_length():
    from forgetflow.methods.l2ul import default_step

    assert default_step(4.0, 100) == pytest.approx(0.1)  # the paper's eps 4.0, step 0.1, 100 iterations
    assert default_step(2.0, 10) * 10 == pytest.approx(default_step(2.0, 100) * 100)


def test_a_spent_budget_cuts_the_attack_short_and_keeps_one_round(setup):
    """The eps probe and the first round stop iterating once the attack's share is spent, so an
    attack of the paper's size (20 rounds x 100 PGD steps) cannot outrun the method's budget."""
    _, model, forget = setup
    result = unlearn("l2ul", model, forget, goal="misclassify", config={"adv_per_instance": 20, "pgd_iters": 100}, time_budget_s=1e-3, progress=False)
    assert result.extra["adversarial_rounds"] == 1
    assert result.stopped_because.startswith("time budget") or result.extra["criterion_met"]
