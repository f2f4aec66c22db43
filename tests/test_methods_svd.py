"""SVD projection (Kodge et al.): the projection maths and the paper's 4-Gaussian toy demo."""

import copy
import itertools

import numpy as np
import pytest
import torch
from torch import nn

from forgetflow.methods import unlearn
from forgetflow.methods._fixtures import make_splits, take, train_small
from forgetflow.methods.svd_projection import Projector, apply_projection, projection_matrix, retain_sample, scaled_projector
from forgetflow.training import evaluate, to_tensor


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """One torch thread: the machine is shared, and oversubscribed threads are far slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_basis(d: int, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(d, k, generator=g, dtype=torch.float64))
    s = torch.rand(k, generator=g, dtype=torch.float64)
    return u, s / s.sum()


def test_scaled_importance_limits():
    u, s = random_basis(6, 3, 0)
    assert torch.allclose(scaled_projector(u, s, 1.0), (u * s) @ u.T)  # alpha = 1: lambda = s
    big = scaled_projector(u, s, 1e9)  # alpha -> inf: lambda -> 1, the orthogonal projector
    assert torch.allclose(big, u @ u.T, atol=1e-6)


def test_projection_is_applied_transposed():
    m_f = scaled_projector(*random_basis(5, 2, 1), 3.0)
    m_r = scaled_projector(*random_basis(5, 3, 2), 100.0)
    p = projection_matrix(m_f, m_r)
    assert not torch.allclose(p, p.T)  # P is not symmetric, so the side matters
    layer = nn.Linear(5, 4, bias=True)
    original, bias = layer.weight.detach().clone(), layer.bias.detach().clone()
    apply_projection(layer, original, p)
    expected = original.double() @ (torch.eye(5, dtype=torch.float64) - m_f + m_r @ m_f)  # W P^T
    assert torch.allclose(layer.weight.double(), expected, atol=1e-6)
    assert not torch.allclose(layer.weight.double(), original.double() @ p, atol=1e-4)
    assert torch.equal(layer.bias, bias)


def test_factorised_projection_equals_explicit_p_transposed():
    from forgetflow.methods.svd_projection import project_weight

    forget_basis, retain_basis = random_basis(7, 3, 4), random_basis(7, 4, 5)
    w = torch.randn(5, 7, dtype=torch.float64)
    p = projection_matrix(scaled_projector(*forget_basis, 3.0), scaled_projector(*retain_basis, 100.0))
    assert torch.allclose(project_weight(w, forget_basis, retain_basis, 3.0, 100.0), w @ p.T, atol=1e-10)


def test_conv_weight_projection_matches_unfold_order():
    conv = nn.Conv2d(2, 3, 3, padding=1, bias=False)
    original = conv.weight.detach().clone()
    p = projection_matrix(scaled_projector(*random_basis(18, 4, 3), 10.0), torch.zeros(18, 18, dtype=torch.float64))
    apply_projection(conv, original, p)
    x = torch.randn(1, 2, 5, 5)
    cols = nn.functional.unfold(x, 3, padding=1)  # (1, 18, 25)
    # the projected conv equals the original weights applied to P^T-transformed patches
    direct = conv(x).flatten(2)
    via = (original.reshape(3, -1) @ p.float().T @ cols[0]).unsqueeze(0)
    assert torch.allclose(direct, via, atol=1e-5)


def gaussian_toy(n_per_class: int, generator: torch.Generator):
    means = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]])
    y = torch.arange(4).repeat_interleave(n_per_class)
    return means[y] + 0.5 * torch.randn(len(y), 2, generator=generator), y


def test_four_gaussians_demo_forgets_class_zero():
    """demo.py: 4 Gaussian classes, 5-layer MLP (width 5, BN), SGD lr 0.1 Nesterov, forget class 0."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x_train, y_train = gaussian_toy(1000, g)
    x_test, y_test = gaussian_toy(300, g)
    layers, width = [], 2
    for _ in range(4):
        layers += [nn.Linear(width, 5), nn.BatchNorm1d(5), nn.ReLU()]
        width = 5
    model = nn.Sequential(*layers, nn.Linear(5, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    for _ in range(10):
        model.train()
        order = torch.randperm(len(y_train), generator=g)
        for start in range(0, len(order), 64):
            batch = order[start : start + 64]
            loss = nn.functional.cross_entropy(model(x_train[batch]), y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()

    def acc(x, y):
        with torch.no_grad():
            return (model(x).argmax(1) == y).float().mean().item()

    forget_test, retain_test = y_test == 0, y_test != 0
    assert acc(x_test[forget_test], y_test[forget_test]) > 0.85  # Bayes rate ~0.95 before forgetting
    projector = Projector(model, x_train[y_train != 0][:300], x_train[y_train == 0][:300])
    best = (-1.0, None)
    for alpha_r, alpha_f in itertools.product([1, 3, 10, 30, 100, 300, 1000], [0.25, 0.5, 0.9, 1, 3, 10, 30, 100]):
        projector.apply(alpha_r, alpha_f)  # selection on train, as demo.py
        score = acc(x_train[y_train != 0], y_train[y_train != 0]) * (1 - acc(x_train[y_train == 0], y_train[y_train == 0]))
        best = max(best, (score, (alpha_r, alpha_f)), key=lambda t: t[0])
    projector.apply(*best[1])
    assert acc(x_test[forget_test], y_test[forget_test]) <= 0.02
    assert acc(x_test[retain_test], y_test[retain_test]) >= 0.9


@pytest.fixture(scope="module")
def digits():
    splits = make_splits("digits", seed=0)
    return splits, train_small(splits, width=8, epochs=8).model


def test_retain_sample_is_first_per_class():
    splits = make_splits("digits", seed=0)
    rows = retain_sample(splits.train, np.array([3]), 5)
    labels = splits.train.labels[rows]
    assert 3 not in labels and all((labels == c).sum() == 5 for c in set(range(10)) - {3})
    for c in set(range(10)) - {3}:
        assert np.array_equal(rows[labels == c], np.flatnonzero(splits.train.labels == c)[:5])


def test_digits_class_forgetting_selects_alpha_on_val(digits):
    splits, model = digits
    forget_class = splits.train.labels == 4
    result = unlearn("svd_projection", model, take(splits.train, forget_class), retain=take(splits.train, ~forget_class), val=splits.val, kind="classes", progress=False)
    assert len(result.log) == 25 and result.stopped_because.startswith("alpha selected on val")
    scored = [row for row in result.log if "val_score" in row]
    best = max(scored, key=lambda row: row["val_score"])
    assert (best["alpha_r"], best["alpha_f"]) == (result.config["alpha_r"], result.config["alpha_f"])
    assert all(row["val_score_at_most"] <= best["val_score"] for row in result.log if "val_score" not in row)
    test_forget = splits.test.labels == 4
    assert evaluate(result.model, take(splits.test, test_forget))["accuracy"] <= 10.0
    assert evaluate(result.model, take(splits.test, ~test_forget))["accuracy"] >= evaluate(model, take(splits.test, ~test_forget))["accuracy"] - 10
    # gradient-free: BatchNorm statistics and biases are untouched
    before, after = model.state_dict(), result.model.state_dict()
    for key in before:
        if "running" in key or key.endswith("bias"):
            assert torch.equal(before[key], after[key]), key


def test_cpu_run_is_deterministic_for_a_seed(digits):
    splits, model = digits
    forget_class = splits.train.labels == 1
    run = lambda seed: unlearn("svd_projection", model, take(splits.train, forget_class), retain=take(splits.train, ~forget_class), val=splits.val, kind="classes", config={"select_alpha": False, "forget_samples": 50}, seed=seed, progress=False).model.state_dict()
    first, second = run(0), run(0)
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_pruned_alpha_search_picks_the_pair_a_full_evaluation_picks(digits):
    """The early exit only skips pairs that cannot win: same choice as scoring every pair fully."""
    from forgetflow.methods.base import Timer
    from forgetflow.methods.svd_projection import AlphaScorer, search_alpha

    splits, original = digits
    grid = list(itertools.product([10.0, 30.0, 100.0, 300.0, 1000.0], [1.0, 3.0, 10.0, 30.0, 100.0]))
    for forget_class in (2, 7):
        model = copy.deepcopy(original)  # the projector edits its model in place
        gone = splits.train.labels == forget_class
        x_retain, x_forget = to_tensor(splits.train.images[~gone][:300]), to_tensor(splits.train.images[gone][:100])
        projector = Projector(model, x_retain, x_forget, generator=torch.Generator().manual_seed(0))
        scorer = AlphaScorer(splits.val, np.array([forget_class]), "cpu", chunk=16)
        chosen, log, _ = search_alpha(projector, scorer, grid, Timer(None))
        full = []
        for pair in grid:
            projector.apply(*pair)
            full.append(scorer.score(model, best=-1.0))
        assert all("val_score" in row for row in full)
        assert chosen == grid[int(np.argmax([row["val_score"] for row in full]))]
        assert sum("val_score" in row for row in log) < len(grid)  # the early exit did skip work
        for row, exact in zip(log, full):
            assert row["val_forget_accuracy"] == exact["val_forget_accuracy"]
            if "val_score" in row:
                assert row["val_score"] == exact["val_score"]
            else:
                assert exact["val_score"] <= row["val_score_at_most"]
