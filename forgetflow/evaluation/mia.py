"""Membership-inference attacks used as unlearning metrics (black-box, one scalar feature each).

All three take per-sample features of the *evaluated* model and return a percentage. None of them
has "higher is better": the target is the retrained reference's value (peers.md §2.2-2.4, §4.2),
so a value past the reference in either direction is a miss (over-forgetting is detectable).

Balancing: the papers balance members and non-members; here the larger side is subsampled to the
smaller one with a seeded generator, and `max_per_side` caps both (an RBF SVC is quadratic in its
training size). Same seed, same inputs -> same number.
"""

from __future__ import annotations

import numpy as np

from forgetflow.evaluation.metrics import softmax


# Features -------------------------------------------------------------------------------
def true_label_confidence(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Softmax probability of the true label (the OPTML MIA feature)."""
    probs = softmax(logits)
    return probs[np.arange(len(labels)), np.asarray(labels)]


def prediction_entropy(logits: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of the softmax output (the Bad Teacher / SSD MIA feature)."""
    probs = softmax(logits)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(probs > 0, probs * np.log(probs), 0.0)
    return -terms.sum(axis=1)


def cross_entropy_per_sample(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-sample cross-entropy loss (the challenge-kit MIA feature), stable in float64."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=1))
    return log_norm - z[np.arange(len(labels)), np.asarray(labels)]


def _subsample(values: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    if len(values) <= n:
        return values
    return values[np.sort(rng.choice(len(values), size=n, replace=False))]


def _balanced(members: np.ndarray, nonmembers: np.ndarray, seed: int, max_per_side: int | None) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = min(len(members), len(nonmembers))
    if max_per_side:
        n = min(n, max_per_side)
    return _subsample(members, n, rng), _subsample(nonmembers, n, rng)


# Attacks --------------------------------------------------------------------------------
def mia_efficacy(retain_conf: np.ndarray, nonmember_conf: np.ndarray, forget_conf: np.ndarray, *, seed: int = 0, max_per_side: int | None = 5000) -> float:
    """MIA-efficacy (OPTML: l1-sparse, SalUn `SVC_MIA`, reported as `confidence`), in percent.

    An `SVC(C=3, gamma="auto", kernel="rbf")` is trained on the true-label confidence of shadow
    members (retain samples, label 1) vs shadow non-members (test samples, label 0); the score is
    the percentage of forget samples it predicts as non-members. Target = reference value (~13 % for
    random 10 % forgetting on CIFAR-10, ~100 % for class forgetting); above it is over-forgetting.

    Deviations: OPTML takes retain[:|D_t|]; we take a seeded random subset of that size (the
    retain order is arbitrary), and cap both shadow sides at `max_per_side` for speed.
    """
    from sklearn.svm import SVC

    members, nonmembers = _balanced(np.asarray(retain_conf), np.asarray(nonmember_conf), seed, max_per_side)
    if len(members) == 0 or len(forget_conf) == 0:
        return float("nan")
    x = np.concatenate([members, nonmembers]).reshape(-1, 1)
    y = np.concatenate([np.ones(len(members)), np.zeros(len(nonmembers))])
    clf = SVC(C=3, gamma="auto", kernel="rbf")
    clf.fit(x, y)
    predicted_member = clf.predict(np.asarray(forget_conf).reshape(-1, 1))
    return float((1.0 - predicted_member.mean()) * 100.0)


def loss_threshold_mia(forget_loss: np.ndarray, nonmember_loss: np.ndarray, *, n_splits: int = 10, seed: int = 0, max_per_side: int | None = 5000) -> float:
    """Loss-threshold MIA of the NeurIPS 2023 unlearning challenge kit (`simple_mia`), in percent.

    Logistic regression on the per-sample cross-entropy, forget (label 1) vs non-member test
    samples (label 0), classes balanced by subsampling; mean accuracy over `n_splits` stratified
    shuffle splits (kit: 10, 10 % held out). Target = reference value (~50 % = chance in the kit);
    below 50 is not "better" (starting-kit issue #9). NaN with fewer than 10 samples per side (a
    10 % test fold would hold no sample of one class).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedShuffleSplit, cross_val_score

    members, nonmembers = _balanced(np.asarray(forget_loss), np.asarray(nonmember_loss), seed, max_per_side)
    if len(members) < 10:
        return float("nan")
    x = np.concatenate([members, nonmembers]).reshape(-1, 1)
    y = np.concatenate([np.ones(len(members)), np.zeros(len(nonmembers))])
    cv = StratifiedShuffleSplit(n_splits=n_splits, random_state=seed)
    scores = cross_val_score(LogisticRegression(), x, y, cv=cv, scoring="accuracy")
    return float(scores.mean() * 100.0)


def entropy_mia(retain_entropy: np.ndarray, nonmember_entropy: np.ndarray, forget_entropy: np.ndarray, *, seed: int = 0, max_per_side: int | None = 5000) -> float:
    """Entropy MIA (SSD `get_membership_attack_prob`; Bad Teacher uses the same feature), in percent.

    Logistic regression (class_weight="balanced") on the prediction entropy, retain (label 1) vs
    non-member test samples (label 0); the score is the percentage of forget samples predicted as
    members. Target = reference value; lower than the reference is over-forgetting.

    Deviation: SSD fits on all retain and test samples with balanced class weights; we also
    subsample to equal sizes (capped at `max_per_side`) so the fit cost stays bounded.
    """
    from sklearn.linear_model import LogisticRegression

    members, nonmembers = _balanced(np.asarray(retain_entropy), np.asarray(nonmember_entropy), seed, max_per_side)
    if len(members) == 0 or len(forget_entropy) == 0:
        return float("nan")
    x = np.concatenate([members, nonmembers]).reshape(-1, 1)
    y = np.concatenate([np.ones(len(members)), np.zeros(len(nonmembers))])
    clf = LogisticRegression(class_weight="balanced")
    clf.fit(x, y)
    return float(clf.predict(np.asarray(forget_entropy).reshape(-1, 1)).mean() * 100.0)
