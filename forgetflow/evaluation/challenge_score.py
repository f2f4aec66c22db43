"""The NeurIPS 2023 Machine Unlearning Challenge score (Triantafillou et al., arXiv 2406.09073).

A NumPy re-implementation of `google-deepmind/unlearning_evaluation/metric.py` (peers.md §2.9),
which only runs on CUDA as published. Given the logit-scaled confidences of every forget example
under N unlearned models (N runs of the method from the same original, different seeds) and N
models retrained from scratch without the forget set, each example gets an epsilon: how well the
best single- or double-threshold rule separates the two N-samples, in the (epsilon, delta)-DP
sense. Epsilons are bucketed into points (1, 1/2, 1/4, ... per 0.5-wide bucket), averaged into the
forget score F, and the final score is F x (RA_u / RA_r) x (TA_u / TA_r) over the N models' means.

Higher is better (1 = indistinguishable from retraining with no utility loss). Scores are only
comparable at equal N, because the bucket range ceil(ln(N - 1)) grows with N: N is reported.

The rates per rule are computed with sorted arrays and `searchsorted` instead of dense
(models x thresholds) comparisons; the thresholds, rules and edge cases are the official ones.
One deviation: when both samples are exact spikes (zero range), the official code divides 0/0 and
goes on; here that example gets the capped epsilon, like any other spike (a deterministic method
is punished either way).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

DELTA = 1e-5
EPSILON_CAP = 50.0
THRESHOLDS_PER_UNIT = 100
DOUBLE_THRESHOLD_BUFFER = 2.0
BUCKET_SIZE = 0.5


def logit_scaled_confidence(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """log p_y - log(1 - p_y), computed stably as in the official code (max logit removed,
    float64, 1e-45 inside the logs; 1 - p_y is summed from the other classes' probabilities)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    probs = np.exp(z)
    probs /= probs.sum(axis=1, keepdims=True)
    rows = np.arange(len(labels))
    correct = probs[rows, np.asarray(labels)].copy()
    probs[rows, np.asarray(labels)] = 0.0
    wrong = probs.sum(axis=1)
    return np.log(correct + 1e-45) - np.log(wrong + 1e-45)


def _count_at_least(sorted_x: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    return len(sorted_x) - np.searchsorted(sorted_x, thresholds, side="left")


def _single_threshold_rates(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, ...]:
    """Rules "x >= t => positive", t on a grid of 100 per unit over the combined range."""
    lo, hi = min(pos.min(), neg.min()), max(pos.max(), neg.max())
    thresholds = np.linspace(lo, hi, int(math.ceil((hi - lo) * THRESHOLDS_PER_UNIT)))
    n = len(pos)
    tpr = _count_at_least(pos, thresholds) / n
    fpr = _count_at_least(neg, thresholds) / n
    return tpr, 1.0 - tpr, fpr, 1.0 - fpr


def _double_threshold_rates(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, ...]:
    """Rules "t_left <= x <= t_right => positive", where positive is the peakier sample."""
    pos_range, neg_range = pos.max() - pos.min(), neg.max() - neg.min()
    width = min(pos_range, neg_range)
    if pos_range >= neg_range:  # official: positive := the peakier distribution
        pos, neg = neg, pos
    buffer = DOUBLE_THRESHOLD_BUFFER
    lo, hi = pos.min() + width - buffer, pos.max() + buffer
    right = np.linspace(lo, hi, int(math.ceil((hi - lo) * THRESHOLDS_PER_UNIT)))
    n_left = int(math.ceil(2 * buffer * THRESHOLDS_PER_UNIT))
    offsets = np.linspace(-width - buffer, -width + buffer, n_left)
    left = (right[:, None] + offsets[None, :]).reshape(-1)
    right = np.repeat(right, n_left)

    def inside(sorted_x: np.ndarray) -> np.ndarray:
        count = np.searchsorted(sorted_x, right, side="right") - np.searchsorted(sorted_x, left, side="left")
        return np.maximum(count, 0) / len(sorted_x)  # an empty window (left > right) holds nothing

    tpr, fpr = inside(pos), inside(neg)
    return tpr, 1.0 - tpr, fpr, 1.0 - fpr


def example_epsilon(pos: np.ndarray, neg: np.ndarray, delta: float = DELTA) -> float:
    """Epsilon of one forget example from its N positive-side and N negative-side confidences."""
    pos, neg = np.sort(np.asarray(pos, dtype=np.float64)), np.sort(np.asarray(neg, dtype=np.float64))
    pos_range, neg_range = pos[-1] - pos[0], neg[-1] - neg[0]
    largest, smallest = max(pos_range, neg_range), min(pos_range, neg_range)
    if largest == 0 or smallest / largest < 0.01:
        return EPSILON_CAP  # one sample is a spike: a deterministic method gets the cap
    rates = [np.concatenate(parts) for parts in zip(_double_threshold_rates(pos, neg), _single_threshold_rates(pos, neg))]
    tpr, fnr, fpr, tnr = rates
    perfect = (fpr + fnr == 0) & (tpr + tnr == 2)
    one_zero = (fpr * fnr == 0) & ~perfect  # insufficient samples: the rule is discarded
    with np.errstate(divide="ignore", invalid="ignore"):
        eps = np.fmax(np.log(1 - delta - fpr) - np.log(fnr), np.log(1 - delta - fnr) - np.log(fpr))
    eps = np.clip(eps, 0.0, None)
    eps[perfect] = np.inf
    eps[one_zero] = np.nan
    if np.all(np.isnan(eps)):
        return EPSILON_CAP  # official code asserts here; no surviving rule is treated as the worst case
    return float(np.clip(np.nanmax(eps), 0.0, EPSILON_CAP))


def example_epsilons(unlearned_confs: np.ndarray, retrained_confs: np.ndarray, *, progress: bool = False) -> np.ndarray:
    """Per-example epsilons; both arrays are (N models, n forget examples)."""
    from tqdm.auto import tqdm

    unlearned, retrained = np.asarray(unlearned_confs, dtype=np.float64), np.asarray(retrained_confs, dtype=np.float64)
    # The positive side of each example is whichever sample has the larger median.
    retrain_positive = np.median(retrained, axis=0) > np.median(unlearned, axis=0)
    pos = np.where(retrain_positive, retrained, unlearned)
    neg = np.where(retrain_positive, unlearned, retrained)
    columns = tqdm(range(pos.shape[1]), desc="challenge epsilons", unit="example", disable=not progress, leave=False)
    return np.array([example_epsilon(pos[:, i], neg[:, i]) for i in columns])


def bucket_points(num_models: int) -> tuple[float, list[tuple[float, float]]]:
    """(max epsilon, [(bucket start, points)]): 0.5-wide buckets worth 1, 1/2, 1/4, ... up to
    ceil(ln(N - 1)); an epsilon at or above the last bucket's end scores 0."""
    max_epsilon = math.ceil(math.log(num_models - 1))
    buckets, start, points = [], 0.0, 1.0
    while start + BUCKET_SIZE <= max_epsilon:
        buckets.append((start, points))
        start += BUCKET_SIZE
        points /= 2
    return float(max_epsilon), buckets


def forget_score_from_epsilons(epsilons: np.ndarray, num_models: int) -> float:
    _, buckets = bucket_points(num_models)
    total = 0.0
    for eps in epsilons:
        for start, points in buckets:
            if eps < start + BUCKET_SIZE:
                total += points
                break
    return total / len(epsilons)


@dataclass
class ChallengeScore:
    final_score: float  # F x RA ratio x TA ratio; higher is better
    forget_score: float  # F in [0, 1]; higher is better
    retain_ratio: float  # mean RA of unlearned / mean RA of retrained
    test_ratio: float  # mean TA of unlearned / mean TA of retrained
    n_models: int  # N per side: scores are comparable only at equal N
    max_epsilon: float
    mean_epsilon: float
    epsilons: list[float]

    def summary(self) -> dict:
        data = asdict(self)
        data.pop("epsilons")
        return data


def challenge_score(
    unlearned_confs: np.ndarray,
    retrained_confs: np.ndarray,
    *,
    unlearned_retain_acc: list[float],
    retrained_retain_acc: list[float],
    unlearned_test_acc: list[float],
    retrained_test_acc: list[float],
    progress: bool = False,
) -> ChallengeScore:
    """The challenge's final score from (N, n_forget) logit-scaled confidences of each side and the
    per-model retain and test accuracies (any one unit, e.g. percent)."""
    from forgetflow.errors import ConfigError

    unlearned, retrained = np.asarray(unlearned_confs), np.asarray(retrained_confs)
    if unlearned.ndim != 2 or unlearned.shape != retrained.shape:
        raise ConfigError(
            f"challenge score needs (N models, n examples) arrays of one shape, got {unlearned.shape} and {retrained.shape}",
            "run the same number of unlearned and retrained models on the same forget set",
        )
    n_models = unlearned.shape[0]
    if n_models < 3 or unlearned.shape[1] == 0:
        raise ConfigError(f"challenge score needs at least 3 models per side and one forget example, got N={n_models}", "run more seeds (the challenge used N=512; 32 is a practical minimum)")
    epsilons = example_epsilons(unlearned, retrained, progress=progress)
    forget = forget_score_from_epsilons(epsilons, n_models)
    ratio = lambda num, den: float(np.mean(num) / np.mean(den)) if np.mean(den) > 0 else float("nan")  # noqa: E731
    retain_ratio = ratio(unlearned_retain_acc, retrained_retain_acc)
    test_ratio = ratio(unlearned_test_acc, retrained_test_acc)
    max_epsilon, _ = bucket_points(n_models)
    return ChallengeScore(
        final_score=forget * retain_ratio * test_ratio,
        forget_score=forget,
        retain_ratio=retain_ratio,
        test_ratio=test_ratio,
        n_models=n_models,
        max_epsilon=max_epsilon,
        mean_epsilon=float(np.mean(epsilons)),
        epsilons=[float(e) for e in epsilons],
    )


def challenge_score_from_models(unlearned_models: list, retrained_models: list, *, forget, retain, test, device: str = "cpu", progress: bool = False) -> ChallengeScore:
    """The challenge score from N unlearned and N retrained models (lists of torch modules) and the
    forget, retain and test splits (`LoadedSplit`); accuracies are taken in percent."""
    from forgetflow.training import predict_logits

    def outputs(model):
        model.to(device)
        conf = logit_scaled_confidence(predict_logits(model, forget.images, device).numpy(), forget.labels)
        accuracies = [float((predict_logits(model, split.images, device).argmax(1).numpy() == split.labels).mean() * 100) for split in (retain, test)]
        return conf, *accuracies

    unlearned = [outputs(m) for m in unlearned_models]
    retrained = [outputs(m) for m in retrained_models]
    return challenge_score(
        np.stack([u[0] for u in unlearned]) if unlearned else np.empty((0, 0)),
        np.stack([r[0] for r in retrained]) if retrained else np.empty((0, 0)),
        unlearned_retain_acc=[u[1] for u in unlearned],
        retrained_retain_acc=[r[1] for r in retrained],
        unlearned_test_acc=[u[2] for u in unlearned],
        retrained_test_acc=[r[2] for r in retrained],
        progress=progress,
    )
