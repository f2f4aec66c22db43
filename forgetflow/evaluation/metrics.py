"""Evaluation metrics as pure functions of model outputs (NumPy arrays in, floats out).

Units: every accuracy-like number is a percentage in [0, 100] (the OPTML convention, so that
Avg. Gap can mix accuracies and MIA-efficacy); divergences are in nats. Each docstring states the
metric's direction: "higher is better", "lower is better", or "target = reference value" (the
retrained-from-scratch model's value; moving past it in either direction is a miss). The glossary
with sources is docs/metrics.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np


# Outputs ---------------------------------------------------------------------------------
def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64, stable (max subtracted)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def predictions(logits: np.ndarray) -> np.ndarray:
    return np.asarray(logits).argmax(axis=1)


# Accuracy family ------------------------------------------------------------------------
def accuracy(preds: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy in percent; NaN for an empty set.

    Direction depends on the split: retain/val/test accuracy (RA, TA) higher is better, but the
    target for all of them under the `forget` goal is the reference value; forget accuracy (FA):
    target = reference value (OPTML, SalUn).
    """
    preds, labels = np.asarray(preds), np.asarray(labels)
    if len(labels) == 0:
        return float("nan")
    return float((preds == labels).mean() * 100.0)


def unlearning_accuracy(forget_accuracy: float) -> float:
    """UA = 100 - forget accuracy (OPTML). Target = reference value (higher than the reference
    means over-forgetting, lower means under-forgetting)."""
    return 100.0 - forget_accuracy


def class_wise_accuracy(preds: np.ndarray, labels: np.ndarray, forget_classes: Iterable[int]) -> tuple[float, float]:
    """(forget-class accuracy, retain-class accuracy) in percent on one split (SVD-Proj, SCRUB).

    Forget-class test accuracy: lower is better, the reference sits near 0 for a class request.
    Retain-class test accuracy: higher is better (target = reference value).
    """
    preds, labels = np.asarray(preds), np.asarray(labels)
    in_forget = np.isin(labels, np.asarray(list(forget_classes)))
    return accuracy(preds[in_forget], labels[in_forget]), accuracy(preds[~in_forget], labels[~in_forget])


def misclassified_rate(preds: np.ndarray, labels: np.ndarray) -> float:
    """Percent of forget instances predicted away from their label (goal `misclassify`, L2UL).
    Higher is better; the goal is met at 100."""
    acc = accuracy(preds, labels)
    return float("nan") if math.isnan(acc) else 100.0 - acc


def relabel_rate(preds: np.ndarray, new_labels: np.ndarray) -> float:
    """Percent of forget instances predicted as their requested new label (goal `relabel`).
    Higher is better; the goal is met at 100."""
    return accuracy(preds, new_labels)


# Closeness of two models' outputs ---------------------------------------------------------
def js_divergence_per_sample(logits_a: np.ndarray, logits_b: np.ndarray) -> np.ndarray:
    """Jensen-Shannon divergence (nats, in [0, ln 2]) between the two softmax outputs, per sample.

    JS(P, Q) = 1/2 KL(P || M) + 1/2 KL(Q || M), M = (P + Q) / 2, with a proper KL summed over
    classes. Lower is better (0 = identical outputs) when measured against the reference. Note: the
    Bad Teacher / SSD code averages the KL over elements instead of summing over classes, so its
    numbers are ~1/C of these (peers.md §2.5).
    """
    p, q = softmax(logits_a), softmax(logits_b)
    m = 0.5 * (p + q)

    def kl(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        # 0 * log(0 / y) = 0 by convention; m > 0 wherever x > 0.
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(x > 0, x * (np.log(x) - np.log(y)), 0.0)
        return terms.sum(axis=1)

    return np.clip(0.5 * kl(p, m) + 0.5 * kl(q, m), 0.0, math.log(2.0))


def js_divergence(logits_a: np.ndarray, logits_b: np.ndarray) -> float:
    """Mean per-sample JS divergence (nats). Lower is better against the reference."""
    values = js_divergence_per_sample(logits_a, logits_b)
    return float(values.mean()) if len(values) else float("nan")


def activation_distance(logits_a: np.ndarray, logits_b: np.ndarray) -> float:
    """mean_i || softmax(a_i) - softmax(b_i) ||_2 (Bad Teacher, SSD). Lower is better against the
    reference (0 = identical outputs, at most sqrt(2))."""
    if len(logits_a) == 0:
        return float("nan")
    return float(np.linalg.norm(softmax(logits_a) - softmax(logits_b), axis=1).mean())


def prediction_agreement(preds_a: np.ndarray, preds_b: np.ndarray) -> float:
    """Percent of samples on which the two models predict the same class. Higher is better
    against the reference (100 = same decisions)."""
    return accuracy(preds_a, preds_b)


def l2_weight_distance(model_a, model_b) -> float:
    """|| theta_a - theta_b ||_2 over all trainable parameters (torch modules of one architecture).

    Lower means closer; note a retrain from a different initialisation is far from every model in
    weight space, so this is a diagnostic of how much a method moved the original, not a target.
    """
    import torch

    params_a, params_b = dict(model_a.named_parameters()), dict(model_b.named_parameters())
    if params_a.keys() != params_b.keys():
        from forgetflow.errors import ConfigError

        raise ConfigError("weight distance needs two models of the same architecture", "compare checkpoints built from the same ModelSpec")
    total = torch.zeros((), dtype=torch.float64)
    with torch.no_grad():
        for name, value in params_a.items():
            total += (value.detach().double().cpu() - params_b[name].detach().double().cpu()).pow(2).sum()
    return float(total.sqrt())


# Against the reference --------------------------------------------------------------------
AVG_GAP_KEYS = ("unlearning_accuracy", "retain_accuracy", "test_accuracy", "mia_efficacy")


def avg_gap(candidate: Mapping[str, float], reference: Mapping[str, float], keys: Sequence[str] = AVG_GAP_KEYS) -> float:
    """Avg. Gap = mean over keys of |candidate - reference| (OPTML: UA, RA, TA, MIA-efficacy, all
    in percent). Lower is better, 0 = indistinguishable from the reference on these metrics.
    NaN if any term is NaN (a gap cannot be computed from a missing metric)."""
    gaps = [abs(float(candidate[k]) - float(reference[k])) for k in keys]
    return float(np.mean(gaps)) if gaps else float("nan")


def tow(candidate: Mapping[str, float], reference: Mapping[str, float]) -> float:
    """Tug-of-war (RUM): (1 - |dFA|/100)(1 - |dRA|/100)(1 - |dTA|/100) with accuracies in percent
    (forget, retain, test). In [0, 1]; higher is better, 1 = the reference's accuracies exactly."""
    value = 1.0
    for key in ("forget_accuracy", "retain_accuracy", "test_accuracy"):
        value *= 1.0 - abs(float(candidate[key]) - float(reference[key])) / 100.0
    return float(value)


def speed_up(reference_seconds: float, candidate_seconds: float) -> float:
    """Retrain wall time / unlearning wall time (Deep Unlearn), one-off costs of the method included
    in `candidate_seconds`. Higher is better; below 1 the method is slower than retraining."""
    if not candidate_seconds or candidate_seconds <= 0 or reference_seconds is None:
        return float("nan")
    return float(reference_seconds) / float(candidate_seconds)


def indiscernibility(attack_accuracy: float) -> float:
    """Deep Unlearn: 1 - |acc - 50| / 50 for a balanced attack accuracy in percent. Higher is better
    (1 = the attack is at chance)."""
    return 1.0 - abs(attack_accuracy - 50.0) / 50.0
