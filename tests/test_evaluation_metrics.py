"""Metric unit tests on small hand-computed examples."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from forgetflow.evaluation import metrics as M

BIG = 1e6  # a logit gap that makes softmax exactly one-hot in float64


def logits_from_probs(probs) -> np.ndarray:
    probs = np.asarray(probs, dtype=np.float64)
    return np.where(probs > 0, np.log(np.where(probs > 0, probs, 1.0)), -BIG)


def test_accuracy_family_by_hand():
    preds, labels = np.array([0, 1, 2, 1]), np.array([0, 1, 1, 1])
    assert M.accuracy(preds, labels) == 75.0
    assert M.unlearning_accuracy(75.0) == 25.0
    assert M.misclassified_rate(preds, labels) == 25.0
    assert M.relabel_rate(np.array([3, 3, 0, 1]), np.array([3, 3, 3, 3])) == 50.0
    assert math.isnan(M.accuracy(np.array([]), np.array([])))
    assert math.isnan(M.misclassified_rate(np.array([]), np.array([])))


def test_class_wise_accuracy_by_hand():
    labels = np.array([0, 0, 1, 1, 2, 2])
    preds = np.array([0, 1, 1, 1, 0, 2])
    forget, retain = M.class_wise_accuracy(preds, labels, [0])
    assert forget == 50.0  # class 0: one of two right
    assert retain == 75.0  # classes 1, 2: three of four right
    forget, retain = M.class_wise_accuracy(preds, labels, [0, 2])
    assert (forget, retain) == (50.0, 100.0)


def test_js_divergence_by_hand_and_against_scipy():
    from scipy.spatial.distance import jensenshannon

    p, q = [0.5, 0.5], [1.0, 0.0]
    # M = (.75, .25); KL(P||M) = .5 ln(2/3) + .5 ln 2; KL(Q||M) = ln(4/3)
    expected = 0.5 * (0.5 * math.log(2 / 3) + 0.5 * math.log(2)) + 0.5 * math.log(4 / 3)
    value = M.js_divergence_per_sample(logits_from_probs([p]), logits_from_probs([q]))[0]
    assert value == pytest.approx(expected, abs=1e-12)
    assert value == pytest.approx(jensenshannon(p, q) ** 2, abs=1e-12)
    # Disjoint supports reach the maximum ln 2; identical outputs give 0.
    assert M.js_divergence(logits_from_probs([[1, 0]]), logits_from_probs([[0, 1]])) == pytest.approx(math.log(2))
    rng = np.random.default_rng(0)
    a = rng.normal(size=(50, 10))
    assert M.js_divergence(a, a) == pytest.approx(0.0, abs=1e-15)
    b = rng.normal(size=(50, 10))
    ours = M.js_divergence_per_sample(a, b)
    theirs = np.array([jensenshannon(x, y) ** 2 for x, y in zip(M.softmax(a), M.softmax(b))])
    np.testing.assert_allclose(ours, theirs, atol=1e-10)


def test_activation_distance_and_agreement_by_hand():
    assert M.activation_distance(logits_from_probs([[1, 0]]), logits_from_probs([[0, 1]])) == pytest.approx(math.sqrt(2))
    # softmax([0, 0]) = (.5, .5) vs (1, 0): distance sqrt(.25 + .25)
    assert M.activation_distance(np.zeros((1, 2)), logits_from_probs([[1, 0]])) == pytest.approx(math.sqrt(0.5))
    assert M.prediction_agreement(np.array([1, 2, 3, 4]), np.array([1, 2, 0, 0])) == 50.0


def test_l2_weight_distance_by_hand():
    torch.manual_seed(0)
    a = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    b = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    b.load_state_dict(a.state_dict())
    assert M.l2_weight_distance(a, b) == 0.0
    with torch.no_grad():
        b[0].weight += 1.0  # 6 entries moved by 1 -> sqrt(6)
        b[1].bias -= 2.0  # 1 entry moved by 2 -> +4
    assert M.l2_weight_distance(a, b) == pytest.approx(math.sqrt(6 + 4))


def test_l2_weight_distance_rejects_other_architectures():
    from forgetflow.errors import ConfigError

    with pytest.raises(ConfigError):
        M.l2_weight_distance(torch.nn.Linear(3, 2), torch.nn.Sequential(torch.nn.Linear(3, 2)))


def test_avg_gap_reproduces_the_salun_table_row():
    # peers.md §2.1: FT's gaps (4.61 + 0.12 + 0.20 + 10.18) / 4 = 3.78
    reference = {"unlearning_accuracy": 5.0, "retain_accuracy": 100.0, "test_accuracy": 94.0, "mia_efficacy": 13.0}
    candidate = {"unlearning_accuracy": 5.0 - 4.61, "retain_accuracy": 100.0 - 0.12, "test_accuracy": 94.0 + 0.20, "mia_efficacy": 13.0 - 10.18}
    assert M.avg_gap(candidate, reference) == pytest.approx(3.7775)
    assert M.avg_gap(reference, reference) == 0.0
    assert math.isnan(M.avg_gap({**candidate, "mia_efficacy": float("nan")}, reference))


def test_tow_by_hand():
    reference = {"forget_accuracy": 90.0, "retain_accuracy": 100.0, "test_accuracy": 90.0}
    candidate = {"forget_accuracy": 100.0, "retain_accuracy": 95.0, "test_accuracy": 92.0}
    assert M.tow(candidate, reference) == pytest.approx(0.9 * 0.95 * 0.98)
    assert M.tow(reference, reference) == 1.0


def test_speed_up_and_indiscernibility():
    assert M.speed_up(120.0, 10.0) == 12.0
    assert math.isnan(M.speed_up(120.0, 0.0))
    assert M.indiscernibility(50.0) == 1.0
    assert M.indiscernibility(100.0) == 0.0
    assert M.indiscernibility(25.0) == 0.5
