"""MIA features and attacks on synthetic inputs with known answers."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from forgetflow.evaluation import mia


def test_features_by_hand():
    logits = np.array([[0.0, 0.0, 0.0, 0.0], [math.log(3.0), 0.0, -1e6, -1e6]])
    labels = np.array([2, 0])
    np.testing.assert_allclose(mia.true_label_confidence(logits, labels), [0.25, 0.75])
    # uniform over 4 classes -> ln 4; (.75, .25) -> -(.75 ln .75 + .25 ln .25)
    np.testing.assert_allclose(mia.prediction_entropy(logits), [math.log(4), -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))])
    rng = np.random.default_rng(0)
    z, y = rng.normal(size=(20, 5)) * 10, rng.integers(0, 5, 20)
    expected = F.cross_entropy(torch.from_numpy(z), torch.from_numpy(y), reduction="none").numpy()
    np.testing.assert_allclose(mia.cross_entropy_per_sample(z, y), expected, rtol=1e-10)


def _confidences(rng, n, low, high):
    return rng.uniform(low, high, n)


def test_mia_efficacy_reads_forget_samples_as_members_or_not():
    rng = np.random.default_rng(0)
    retain = _confidences(rng, 300, 0.95, 1.0)  # memorised: confident
    test = _confidences(rng, 200, 0.2, 0.7)  # unseen: unsure
    forgotten = _confidences(rng, 100, 0.2, 0.7)
    remembered = _confidences(rng, 100, 0.95, 1.0)
    assert mia.mia_efficacy(retain, test, forgotten, seed=0) == 100.0
    assert mia.mia_efficacy(retain, test, remembered, seed=0) == 0.0


def test_loss_mia_is_chance_when_indistinguishable_and_high_when_separable():
    rng = np.random.default_rng(0)
    same_a, same_b = rng.exponential(1.0, 400), rng.exponential(1.0, 400)
    assert abs(mia.loss_threshold_mia(same_a, same_b, seed=0) - 50.0) < 10.0
    members, nonmembers = rng.uniform(0, 0.1, 400), rng.uniform(1, 2, 400)
    assert mia.loss_threshold_mia(members, nonmembers, seed=0) == 100.0
    assert math.isnan(mia.loss_threshold_mia(members[:9], nonmembers, seed=0))


def test_entropy_mia_flags_low_entropy_forget_samples_as_members():
    rng = np.random.default_rng(1)
    retain, test = rng.uniform(0.0, 0.1, 300), rng.uniform(0.5, 2.0, 300)
    assert mia.entropy_mia(retain, test, rng.uniform(0.0, 0.1, 50), seed=0) == 100.0
    assert mia.entropy_mia(retain, test, rng.uniform(0.5, 2.0, 50), seed=0) == 0.0


def test_balancing_subsamples_the_larger_side_deterministically():
    rng = np.random.default_rng(0)
    members, nonmembers = np.arange(1000.0), np.arange(50.0)
    a, b = mia._balanced(members, nonmembers, seed=3, max_per_side=None)
    assert len(a) == len(b) == 50
    again, _ = mia._balanced(members, nonmembers, seed=3, max_per_side=None)
    np.testing.assert_array_equal(a, again)
    capped, _ = mia._balanced(members, np.arange(500.0), seed=3, max_per_side=20)
    assert len(capped) == 20
    # Same seed, same score; the attacks are deterministic functions of their inputs.
    x, y, f = rng.uniform(0, 1, 300), rng.uniform(0, 1, 200), rng.uniform(0, 1, 80)
    assert mia.mia_efficacy(x, y, f, seed=5) == mia.mia_efficacy(x, y, f, seed=5)
    assert mia.loss_threshold_mia(f, y, seed=5) == mia.loss_threshold_mia(f, y, seed=5)
    assert mia.entropy_mia(x, y, f, seed=5) == mia.entropy_mia(x, y, f, seed=5)


def test_attacks_return_nan_on_empty_sets():
    assert math.isnan(mia.mia_efficacy(np.array([]), np.array([0.5]), np.array([0.5])))
    assert math.isnan(mia.entropy_mia(np.array([0.1]), np.array([0.5]), np.array([])))
