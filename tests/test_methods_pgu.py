"""PGU (Hoang et al.): projection invariants, covariance by subtraction, stopping and sequencing."""

import numpy as np
import pytest
import torch

from forgetflow.layer_stats import accumulate_covariance, compute_layer_stats, covariance_from_stats, projectable_layers
from forgetflow.methods import unlearn
from forgetflow.methods._fixtures import make_splits, take, train_small
from forgetflow.methods.base import MissingInputError
from forgetflow.methods.pgu import forget_loss, project_gradient, projectors, retain_statistics, subspace_size
from forgetflow.training import to_tensor


@pytest.fixture(scope="module")
def setup():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    splits = make_splits("digits", seed=0)
    model = train_small(splits, width=8, epochs=8).model
    stats = compute_layer_stats(model, splits.train.images)
    rows = np.random.default_rng(0).choice(len(splits.train.labels), len(splits.train.labels) // 10, replace=False)
    mask = np.zeros(len(splits.train.labels), bool)
    mask[rows] = True
    yield splits, model, stats, take(splits.train, mask), take(splits.train, ~mask)
    torch.set_num_threads(threads)


def test_retain_covariance_by_subtraction_equals_direct(setup):
    splits, model, stats, forget, retain = setup
    subtracted = retain_statistics(model, stats, forget.images, "cpu")
    direct = accumulate_covariance(model, (to_tensor(retain.images[s : s + 256]) for s in range(0, len(retain.labels), 256)))
    assert subtracted["n_samples"] == len(retain.labels)
    for name, cov in direct.items():
        rebuilt = covariance_from_stats(subtracted["layers"][name])
        # both sides add float32 products of short pieces into float64 (layer_stats.row_gram)
        assert torch.allclose(rebuilt, cov, rtol=0, atol=1e-6 * float(cov.abs().max())), name


def test_projected_gradient_has_no_component_in_kept_subspace(setup):
    splits, model, stats, forget, _ = setup
    proj = projectors(retain_statistics(model, stats, forget.images, "cpu"), {"gamma": 0.95, "gamma_per_layer": {}}, class_removal=False)
    layers = projectable_layers(model)
    assert set(proj) == set(layers)
    x, y = to_tensor(forget.images[:64]), torch.from_numpy(forget.labels[:64])
    model.eval()
    grads = torch.autograd.grad(forget_loss(model(x), y, 0.05, 1.0, 0.2), [layers[n].weight for n in proj])
    for (name, p), grad in zip(proj.items(), grads):
        assert torch.allclose(p @ p, p, atol=1e-5)  # an orthogonal projector
        projected = project_gradient(grad, p)
        flat = projected.reshape(projected.shape[0], -1)
        assert float((flat @ p).norm()) <= 1e-5 * max(float(grad.norm()), 1e-12), name


def test_threshold_uses_cumulative_sigma_not_energy():
    sigma = torch.tensor([4.0, 3.0, 2.0, 1.0])  # cumsum/sum = .4 .7 .9 1.0
    assert subspace_size(sigma, 0.9) == 3
    assert subspace_size(sigma, 0.69) == 1
    energy_rule = int((torch.cumsum(sigma**2, 0) / (sigma**2).sum() <= 0.9).sum())
    assert energy_rule == 2  # sigma^2 would keep fewer directions


def test_forget_loss_pushes_true_class_down_and_entropy_up():
    logits = torch.tensor([[4.0, 0.0, 0.0]], requires_grad=True)
    loss = forget_loss(logits, torch.tensor([0]), 0.05, 1.0, 0.2)
    (grad,) = torch.autograd.grad(loss, logits)
    assert grad[0, 0] > 0 and grad[0, 1] < 0  # descending lowers the true logit, raises the others
    assert torch.isfinite(forget_loss(torch.tensor([[50.0, 0.0]]), torch.tensor([0]), 0.05, 1.0, 0.2))


def test_data_removal_moves_only_projected_weights_and_carries_stats(setup):
    splits, model, stats, forget, _ = setup
    result = unlearn("pgu", model, forget, val=splits.val, stats=stats, config={"epochs": 3, "lr": 0.5, "end_lr": 0.1}, progress=False)
    before, after = model.state_dict(), result.model.state_dict()
    weights = {f"{name}.weight" for name in projectable_layers(model)}
    for key in before:
        if key not in weights:
            assert torch.equal(before[key], after[key]), f"{key} must stay frozen"
    assert any(not torch.equal(before[k], after[k]) for k in weights) or "kept epoch 0" in result.stopped_because
    assert result.log[0]["epoch"] == 0 and len(result.log) <= 4
    carried = result.extra["layer_stats"]
    assert carried["n_samples"] == stats["n_samples"] - len(forget.labels)
    # a second request subtracts from the carried retain statistics
    second = take(splits.train, np.flatnonzero(~np.isin(splits.train.sample_ids, forget.sample_ids))[:50])
    again = unlearn("pgu", result.model, second, val=splits.val, stats=carried, config={"epochs": 1}, progress=False)
    assert again.extra["layer_stats"]["n_samples"] == carried["n_samples"] - 50


def test_gap_rule_keeps_the_epoch_closest_to_zero(setup):
    splits, model, stats, forget, _ = setup
    result = unlearn("pgu", model, forget, val=splits.val, stats=stats, config={"epochs": 20, "lr": 0.5, "end_lr": 0.5, "gamma": 0.0}, progress=False)
    if "passed" in result.stopped_because:  # gamma 0 keeps no retain directions: plain descent on the forget loss
        last, prev = result.log[-1], result.log[-2]
        assert last["gap"] > 0 >= prev["gap"]
        kept = prev if "kept epoch" in result.stopped_because and f"kept epoch {last['epoch'] - 1}" in result.stopped_because else last
        assert abs(kept["gap"]) == min(abs(last["gap"]), abs(prev["gap"]))
    else:
        pytest.fail(f"aggressive settings should cross the gap: {result.stopped_because}")


def test_class_removal_uses_val_retain_accuracy(setup):
    splits, model, stats, _, _ = setup
    forget = take(splits.train, splits.train.labels == 2)
    result = unlearn("pgu", model, forget, val=splits.val, stats=stats, kind="classes", config={"epochs": 5}, progress=False)
    assert "val_retain_accuracy" in result.log[0] and "val_forget_accuracy" in result.log[-1]
    assert result.log[-1]["val_forget_accuracy"] <= result.log[0]["val_forget_accuracy"]


def test_missing_stats_says_how_to_fix(setup):
    splits, model, _, forget, _ = setup
    with pytest.raises(MissingInputError, match="store_layer_stats: true"):
        unlearn("pgu", model, forget, val=splits.val, stats=None, progress=False)


def test_class_removal_stops_once_the_class_is_forgotten_on_val(setup):
    splits, model, stats, _, _ = setup
    forget = take(splits.train, splits.train.labels == 3)
    config = {"epochs": 40, "lr": 0.5, "end_lr": 0.5, "class_stop_accuracy": 20.0}
    result = unlearn("pgu", model, forget, val=splits.val, stats=stats, kind="classes", config=config, progress=False)
    assert result.config["gamma"] == 0.9  # the class-removal paper default when gamma is None
    assert result.config["gamma_per_layer"] == {"net.features.0": 0.95}  # ... but the stem keeps 0.95
    assert "forgotten classes" in result.stopped_because, result.stopped_because
    rows = result.log
    assert rows[-1]["val_forget_accuracy"] <= 20.0 < min(r["val_forget_accuracy"] for r in rows[:-1])
    assert "forget_accuracy" in rows[-1]  # the forget-train accuracy of the model handed back
    # None runs on past that epoch (the released code's rule), unless the retain rule stops it
    longer = unlearn("pgu", model, forget, val=splits.val, stats=stats, kind="classes", config={**config, "class_stop_accuracy": None, "epochs": len(rows) + 2}, progress=False)
    assert "forgotten classes" not in longer.stopped_because and (len(longer.log) == len(rows) + 3 or "retain accuracy dropped" in longer.stopped_because)


def test_class_removal_paper_config_keeps_the_stem_and_a_resnets_layer2_conv1():
    from forgetflow.layer_stats import projectable_layers
    from forgetflow.methods.pgu import paper_gamma
    from forgetflow.models import ModelSpec, build_model

    resnet = list(projectable_layers(build_model(ModelSpec(arch="resnet18", in_channels=1, num_classes=10, image_size=28))))
    gamma, kept = paper_gamma(resnet, class_removal=True)
    assert gamma == 0.9 and kept == {"net.conv1": 0.95, "net.layer2.0.conv1": 0.95}  # the released config's two exceptions
    assert paper_gamma(resnet, class_removal=False) == (0.95, {})
    cnn = list(projectable_layers(build_model(ModelSpec(arch="small_cnn", in_channels=1, num_classes=10, image_size=28, width=4))))
    assert paper_gamma(cnn, class_removal=True) == (0.9, {cnn[0]: 0.95})


def test_explicit_per_layer_gamma_wins_over_the_paper_config(setup):
    splits, model, stats, _, _ = setup
    forget = take(splits.train, splits.train.labels == 2)
    result = unlearn("pgu", model, forget, val=splits.val, stats=stats, kind="classes", config={"epochs": 1, "gamma_per_layer": {"net.features.0": 1.0}}, progress=False)
    assert result.config["gamma_per_layer"] == {"net.features.0": 1.0}
    assert "net.features.0" not in result.extra["projected_layers"]  # 1.0 freezes the layer


def test_a_budget_spent_mid_epoch_stops_after_the_current_step(setup, monkeypatch):
    """Like the other methods, PGU checks its budget between steps; the cut epoch is logged
    without an evaluation and ends the run."""
    from forgetflow.methods import pgu as module
    from forgetflow.methods._fixtures import timer_spent_after

    steps = []
    real = module.batch_tensors
    monkeypatch.setattr(module, "Timer", timer_spent_after(4))
    monkeypatch.setattr(module, "batch_tensors", lambda *a, **k: steps.append(1) or real(*a, **k))
    splits, model, stats, forget, _ = setup
    result = unlearn("pgu", model, forget, val=splits.val, stats=stats, config={"epochs": 10, "batch_size": 16}, time_budget_s=1.0, progress=False)
    assert len(steps) == 3 < -(-len(forget.labels) // 16)  # one check at the epoch's start, one before each step
    assert [row["epoch"] for row in result.log] == [0, 1] and "gap" not in result.log[1]
    assert "reached in epoch 1" in result.stopped_because
