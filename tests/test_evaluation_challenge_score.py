"""The NeurIPS 2023 challenge score: against a dense line-by-line port of the official metric.py."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from forgetflow.errors import ConfigError
from forgetflow.evaluation import challenge_score as C


# A direct NumPy transcription of google-deepmind/unlearning_evaluation metric.py (dense
# (models x thresholds) comparisons, as published), used only to cross-check our fast version.
def _official_double(pos, neg):
    pos_diff, neg_diff = pos.max() - pos.min(), neg.max() - neg.min()
    smallest = neg_diff if pos_diff > neg_diff else pos_diff
    if pos_diff >= neg_diff:
        pos, neg = neg, pos
    buffer, width = 2.0, smallest
    min_, max_ = pos.min() + width - buffer, pos.max() + buffer
    right = np.linspace(min_, max_, num=int(np.ceil((max_ - min_) * 100)))
    n_left = int(np.ceil(2 * buffer * 100))
    thr_left = np.concatenate([np.linspace(tr - width - buffer, tr - width + buffer, num=n_left) for tr in right])
    thr_right = np.tile(right.reshape(-1, 1), (1, n_left)).reshape(-1)
    pp = lambda c: ((thr_left[None, :] <= c[:, None]) & (c[:, None] <= thr_right[None, :])).astype(float)  # noqa: E731
    tpr, fpr = pp(pos).mean(0), pp(neg).mean(0)
    return tpr, 1 - tpr, fpr, 1 - fpr


def _official_single(pos, neg):
    both = np.concatenate([pos, neg])
    t = np.linspace(both.min(), both.max(), int(np.ceil((both.max() - both.min()) * 100)))
    tpr, fpr = (pos[:, None] >= t[None, :]).mean(0), (neg[:, None] >= t[None, :]).mean(0)
    return tpr, (pos[:, None] < t[None, :]).mean(0), fpr, (neg[:, None] < t[None, :]).mean(0)


def _official_epsilon(pos, neg, delta=1e-5):
    pos_diff, neg_diff = np.ptp(pos), np.ptp(neg)
    if min(pos_diff, neg_diff) / max(pos_diff, neg_diff) < 0.01:
        return 50.0
    d, s = _official_double(pos, neg), _official_single(pos, neg)
    tpr, fnr, fpr, tnr = (np.concatenate([a, b]) for a, b in zip(d, s))
    eps = np.zeros_like(tpr)
    eps = np.where((fpr + fnr == 0) & (tpr + tnr == 2), np.inf, eps)
    eps = np.where((eps == 0) & (fpr * fnr == 0), np.nan, eps)
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns, as in the original
        values = np.clip(np.nanmax([np.log(1 - delta - fpr) - np.log(fnr), np.log(1 - delta - fnr) - np.log(fpr)], axis=0), 0, None)
    eps = np.where(eps == 0, values, eps)
    eps = eps[~np.isnan(eps)]
    return float(np.clip(np.nanmax(eps), 0, 50))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_epsilons_match_the_official_dense_computation(seed):
    rng = np.random.default_rng(seed)
    n_models, n_examples = 8, 6
    unlearned = rng.normal(3.0, 1.0, (n_models, n_examples)) + rng.normal(0, 1.5, n_examples)
    retrained = rng.normal(2.0, 0.7, (n_models, n_examples))
    retrained[:, 0] = unlearned[:, 0] + 20.0  # one perfectly separated example (epsilon = inf -> 50)
    ours = C.example_epsilons(unlearned, retrained)
    retrain_positive = np.median(retrained, 0) > np.median(unlearned, 0)
    pos, neg = np.where(retrain_positive, retrained, unlearned), np.where(retrain_positive, unlearned, retrained)
    official = [_official_epsilon(pos[:, i], neg[:, i]) for i in range(n_examples)]
    np.testing.assert_allclose(ours, official, rtol=1e-12)
    assert ours[0] == 50.0


def test_spike_gets_the_cap_and_identical_samples_score_full_points():
    rng = np.random.default_rng(0)
    spread = rng.normal(0, 1, 16)
    assert C.example_epsilon(spread, np.full(16, 0.3)) == C.EPSILON_CAP  # a deterministic method
    # Indistinguishable sides score clearly better than sides shifted by one standard deviation
    # (finite N biases epsilon upwards, so even identical distributions do not reach 1).
    same = C.forget_score_from_epsilons(C.example_epsilons(rng.normal(0, 1, (32, 40)), rng.normal(0, 1, (32, 40))), 32)
    shifted = C.forget_score_from_epsilons(C.example_epsilons(rng.normal(0, 1, (32, 40)), rng.normal(1, 1, (32, 40))), 32)
    assert same > 2 * shifted > 0
    # Fully separated: every epsilon is capped, zero points.
    far = C.example_epsilons(rng.normal(0, 1, (32, 10)), rng.normal(30, 1, (32, 10)))
    assert np.all(far == C.EPSILON_CAP)
    assert C.forget_score_from_epsilons(far, 32) == 0.0


def test_buckets_follow_the_official_schedule():
    max_eps, buckets = C.bucket_points(32)
    assert max_eps == 4 and len(buckets) == 8  # peers.md §2.9: N = 32 -> ceil(ln 31) = 4
    assert buckets[0] == (0.0, 1.0) and buckets[1] == (0.5, 0.5) and buckets[-1] == (3.5, 2.0**-7)
    max_eps, buckets = C.bucket_points(512)
    assert max_eps == 7 and len(buckets) == 14
    # epsilon 0.2 -> 1 point, 0.7 -> 1/2, 1.2 -> 1/4, 4.0 (>= max) -> 0
    assert C.forget_score_from_epsilons(np.array([0.2, 0.7, 1.2, 4.0]), 32) == pytest.approx((1 + 0.5 + 0.25 + 0) / 4)


def test_final_score_multiplies_the_utility_ratios_and_reports_n():
    rng = np.random.default_rng(0)
    u, r = rng.normal(0, 1, (10, 5)), rng.normal(0, 1, (10, 5))
    score = C.challenge_score(u, r, unlearned_retain_acc=[90.0] * 10, retrained_retain_acc=[100.0] * 10, unlearned_test_acc=[80.0] * 10, retrained_test_acc=[100.0] * 10)
    assert score.n_models == 10
    assert score.retain_ratio == pytest.approx(0.9) and score.test_ratio == pytest.approx(0.8)
    assert score.final_score == pytest.approx(score.forget_score * 0.72)
    assert "epsilons" not in score.summary()


def test_shape_mismatch_and_too_few_models_are_config_errors():
    with pytest.raises(ConfigError):
        C.challenge_score(np.zeros((4, 3)), np.zeros((5, 3)), unlearned_retain_acc=[1], retrained_retain_acc=[1], unlearned_test_acc=[1], retrained_test_acc=[1])
    with pytest.raises(ConfigError):
        C.challenge_score(np.zeros((2, 3)), np.zeros((2, 3)), unlearned_retain_acc=[1], retrained_retain_acc=[1], unlearned_test_acc=[1], retrained_test_acc=[1])


def test_logit_scaled_confidence_is_log_odds_of_the_true_label():
    rng = np.random.default_rng(0)
    logits, labels = rng.normal(0, 2, (30, 4)), rng.integers(0, 4, 30)
    z = np.exp(logits - logits.max(1, keepdims=True))
    p = (z / z.sum(1, keepdims=True))[np.arange(30), labels]
    np.testing.assert_allclose(C.logit_scaled_confidence(logits, labels), np.log(p / (1 - p)), rtol=1e-9)
    # Stable where the naive formula overflows: a huge margin stays finite.
    assert math.isfinite(C.logit_scaled_confidence(np.array([[1000.0, 0.0]]), np.array([0]))[0])


def test_score_from_models_matches_the_score_from_confidences():
    import torch

    from forgetflow.data.sources import load_source
    from forgetflow.data.store import LoadedSplit
    from forgetflow.models import ModelSpec, build_model
    from forgetflow.training import predict_logits

    raw = load_source("digits")
    split = lambda lo, hi: LoadedSplit(raw.images[lo:hi], raw.labels[lo:hi], np.arange(lo, hi))  # noqa: E731
    forget, retain, test = split(0, 20), split(20, 120), split(120, 220)
    spec = ModelSpec(arch="small_cnn", in_channels=1, num_classes=10, image_size=8, width=4)

    def model(seed):
        torch.manual_seed(seed)
        return build_model(spec).eval()

    unlearned, retrained = [model(s) for s in range(4)], [model(100 + s) for s in range(4)]
    score = C.challenge_score_from_models(unlearned, retrained, forget=forget, retain=retain, test=test)
    confs = lambda models: np.stack([C.logit_scaled_confidence(predict_logits(m, forget.images).numpy(), forget.labels) for m in models])  # noqa: E731
    acc = lambda m, s: float((predict_logits(m, s.images).argmax(1).numpy() == s.labels).mean() * 100)  # noqa: E731
    expected = C.challenge_score(
        confs(unlearned), confs(retrained),
        unlearned_retain_acc=[acc(m, retain) for m in unlearned], retrained_retain_acc=[acc(m, retain) for m in retrained],
        unlearned_test_acc=[acc(m, test) for m in unlearned], retrained_test_acc=[acc(m, test) for m in retrained],
    )
    assert score == expected and score.n_models == 4
