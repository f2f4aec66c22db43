"""One entry point: every number the report and the gate need for one candidate model.

    evaluate_candidate(original, candidate, reference, forget=..., retain=..., val=..., test=...,
                       request_kind="samples", goal="forget") -> Evaluation

Each model's logits are computed once per split; everything else is NumPy on those logits. The
original model is evaluated alongside so the report can show how far unlearning moved it, and so
that goals judged against the original (`misclassify`, `relabel`) can be gated.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from forgetflow.data.store import LoadedSplit
from forgetflow.errors import ConfigError
from forgetflow.evaluation import metrics as M
from forgetflow.evaluation import mia
from forgetflow.evaluation.config import EvaluationParams
from forgetflow.evaluation.gate import GateDecision, decide

ROLES = ("original", "candidate", "reference")
# The request vocabulary of DESIGN.md §4 (the same tuples as forgetflow.requests.schema); kept here
# so that evaluation does not import the method registry (which imports every method).
KINDS = ("samples", "subjects", "classes")
GOALS = ("forget", "misclassify", "relabel")


@dataclass
class Outputs:
    """One model's logits on every split (NumPy float32)."""

    logits: dict[str, np.ndarray]


@dataclass
class Evaluation:
    goal: str
    kind: str
    metrics: dict[str, dict[str, float]]  # role -> metric -> value
    closeness: dict[str, dict[str, float]]  # "candidate_vs_reference", "original_vs_reference", ...
    summary: dict[str, float]  # avg_gap, tow, speed_up, seconds
    decision: GateDecision
    distributions: dict[str, dict[str, dict[str, np.ndarray]]] = field(repr=False, default_factory=dict)  # role -> split -> feature -> values
    sizes: dict[str, int] = field(default_factory=dict)
    settings: dict = field(default_factory=dict)


def model_outputs(model, splits: dict[str, LoadedSplit], device: str = "cpu") -> Outputs:
    """Logits of `model` on each split (the model is moved to `device` and put in eval mode)."""
    from forgetflow.training import predict_logits

    model.to(device)
    return Outputs({name: predict_logits(model, split.images, device).numpy() for name, split in splits.items()})


def _check_request(kind: str, goal: str, forget: LoadedSplit, forget_classes, new_labels) -> tuple[np.ndarray | None, np.ndarray | None]:
    if kind not in KINDS:
        raise ConfigError(f"unknown request kind {kind!r}", f"request_kind must be one of {', '.join(KINDS)}")
    if goal not in GOALS:
        raise ConfigError(f"unknown goal {goal!r}", f"goal must be one of {', '.join(GOALS)}")
    if len(forget.labels) == 0:
        raise ConfigError("the forget set is empty: nothing to evaluate", "evaluate a candidate built from a non-empty deletion request")
    classes = None
    if kind == "classes":
        classes = np.unique(forget.labels) if forget_classes is None else np.asarray(list(forget_classes))
    targets = None
    if goal == "relabel":
        if new_labels is None:
            raise ConfigError("goal `relabel` needs the new label of each forget sample", "pass new_labels (one per forget sample)")
        targets = np.broadcast_to(np.asarray(new_labels, dtype=np.int64), forget.labels.shape)
    return classes, targets


def split_metrics(
    outputs: Outputs,
    splits: dict[str, LoadedSplit],
    *,
    kind: str,
    goal: str,
    forget_classes: np.ndarray | None,
    new_labels: np.ndarray | None,
    params: EvaluationParams,
) -> tuple[dict[str, float], dict[str, dict[str, np.ndarray]]]:
    """Accuracy family and MIAs of one model; also returns per-sample features for the plots."""
    logits, labels = outputs.logits, {name: split.labels for name, split in splits.items()}
    preds = {name: M.predictions(value) for name, value in logits.items()}
    out = {f"{name}_accuracy": M.accuracy(preds[name], labels[name]) for name in logits}
    out["unlearning_accuracy"] = M.unlearning_accuracy(out["forget_accuracy"])
    if forget_classes is not None:
        out["forget_class_test_accuracy"], out["retain_class_test_accuracy"] = M.class_wise_accuracy(preds["test"], labels["test"], forget_classes)
    if goal == "misclassify":
        out["misclassified_rate"] = M.misclassified_rate(preds["forget"], labels["forget"])
    if goal == "relabel":
        out["relabel_rate"] = M.relabel_rate(preds["forget"], new_labels)

    features: dict[str, dict[str, np.ndarray]] = {}
    for name in logits:
        features[name] = {
            "confidence": mia.true_label_confidence(logits[name], labels[name]),
            "entropy": mia.prediction_entropy(logits[name]),
            "loss": mia.cross_entropy_per_sample(logits[name], labels[name]),
        }
    s = params.mia
    nonmember = s.nonmember_split
    out["mia_efficacy"] = mia.mia_efficacy(features["retain"]["confidence"], features[nonmember]["confidence"], features["forget"]["confidence"], seed=s.seed, max_per_side=s.max_per_side)
    # SCRUB: for class requests the loss attack's non-members are test samples of the forgotten classes.
    nonmember_loss = features[nonmember]["loss"]
    if forget_classes is not None:
        nonmember_loss = nonmember_loss[np.isin(labels[nonmember], forget_classes)]
    out["loss_mia"] = mia.loss_threshold_mia(features["forget"]["loss"], nonmember_loss, n_splits=s.loss_mia_splits, seed=s.seed, max_per_side=s.max_per_side)
    out["entropy_mia"] = mia.entropy_mia(features["retain"]["entropy"], features[nonmember]["entropy"], features["forget"]["entropy"], seed=s.seed, max_per_side=s.max_per_side)
    if goal == "forget" and forget_classes is None:
        out.update(heldout_metrics(features, preds, labels, params))
    out["forget_mean_loss"] = float(features["forget"]["loss"].mean())
    out["forget_mean_confidence"] = float(features["forget"]["confidence"].mean())
    return out, features


def heldout_metrics(features: dict, preds: dict, labels: dict, params: EvaluationParams) -> dict[str, float]:
    """The fast path's reference-free view of forgetting: the forget set against held-out val
    samples of the same classes (never trained on). Accuracy is reweighted to the forget set's class
    mix; the loss MIA tries to tell forget from held-out (50 = it cannot); MIA-efficacy is the same
    attack as `mia_efficacy`, scored on the held-out samples (the value an unseen set gets)."""
    s = params.mia
    forget_labels, val_labels = labels["forget"], labels["val"]
    classes, counts = np.unique(forget_labels, return_counts=True)
    heldout = np.isin(val_labels, classes)
    out = {"heldout_samples": float(heldout.sum())}
    correct = preds["val"] == val_labels
    per_class = []
    for cls, count in zip(classes, counts):
        mask = val_labels == cls
        if not mask.any():  # a class with no held-out sample: the comparison cannot be made (NaN fails)
            return {**out, "heldout_accuracy": float("nan"), "heldout_loss_mia": float("nan"), "heldout_mia_efficacy": float("nan")}
        per_class.append((count, correct[mask].mean()))
    out["heldout_accuracy"] = float(sum(c * a for c, a in per_class) / counts.sum() * 100.0)
    out["heldout_loss_mia"] = mia.loss_threshold_mia(features["forget"]["loss"], features["val"]["loss"][heldout], n_splits=s.loss_mia_splits, seed=s.seed, max_per_side=s.max_per_side)
    nonmember = s.nonmember_split
    out["heldout_mia_efficacy"] = mia.mia_efficacy(features["retain"]["confidence"], features[nonmember]["confidence"], features["val"]["confidence"][heldout], seed=s.seed, max_per_side=s.max_per_side)
    return out


def closeness(a: Outputs, b: Outputs) -> dict[str, float]:
    """Output closeness of model a to model b on the forget set (and agreement on test)."""
    return {
        "forget_js_divergence": M.js_divergence(a.logits["forget"], b.logits["forget"]),
        "forget_activation_distance": M.activation_distance(a.logits["forget"], b.logits["forget"]),
        "forget_prediction_agreement": M.prediction_agreement(M.predictions(a.logits["forget"]), M.predictions(b.logits["forget"])),
        "test_prediction_agreement": M.prediction_agreement(M.predictions(a.logits["test"]), M.predictions(b.logits["test"])),
    }


def _fingerprint(splits: dict[str, LoadedSplit], kind: str, goal: str, classes, targets, params: EvaluationParams) -> str:
    """What the cached outputs and metrics depend on besides the model: samples and request."""
    import hashlib

    digest = hashlib.sha256()
    for name, split in splits.items():
        digest.update(name.encode() + np.ascontiguousarray(split.sample_ids, dtype="<i8").tobytes())
    for part in (kind, goal, classes, targets, params.mia.model_dump_json()):
        digest.update(repr(None if part is None else (part.tobytes() if isinstance(part, np.ndarray) else part)).encode())
    return digest.hexdigest()


def evaluate_candidate(
    original,
    candidate,
    reference,
    *,
    forget: LoadedSplit,
    retain: LoadedSplit,
    val: LoadedSplit,
    test: LoadedSplit,
    request_kind: str,
    goal: str,
    forget_classes=None,
    new_labels=None,
    params: EvaluationParams | None = None,
    candidate_seconds: float | None = None,
    reference_seconds: float | None = None,
    reference_required: bool = False,
    reference_note: str = "",
    device: str = "cpu",
    outputs_cache: dict[str, Outputs] | None = None,
) -> Evaluation:
    """Evaluate `candidate` (an unlearned model) against `reference` (retrained on `retain`, or
    None when the reference policy skipped it) and `original` (the model before unlearning).

    `forget` is the deleted data (kept in memory only for this evaluation), `retain` the training
    data that stays; `val`/`test` are never trained on. `candidate_seconds` is the method's wall
    time including its one-off costs; `reference_seconds` the retrain's. Returns the metrics of each
    model, the candidate's closeness to the reference, Avg. Gap, ToW, speed-up and the gate decision.

    `outputs_cache`: pass the same dict when evaluating several candidates (e.g. a hyperparameter
    search): the original's and the reference's logits and metrics are computed once per model and
    request (entries are keyed by the model object and a fingerprint of the splits' sample IDs,
    kind, goal and MIA settings, so a different forget set never reuses them).
    """
    params = params or EvaluationParams()
    classes, targets = _check_request(request_kind, goal, forget, forget_classes, new_labels)
    splits = {"forget": forget, "retain": retain, "val": val, "test": test}
    models = {"original": original, "candidate": candidate, "reference": reference}
    cache = outputs_cache if outputs_cache is not None else {}
    fingerprint = _fingerprint(splits, request_kind, goal, classes, targets, params)
    outputs = {}
    for role, model in models.items():
        if model is None:
            continue
        key = (role, id(model), fingerprint)  # a cached entry is only reused for the same model and request
        if role == "candidate" or key not in cache:
            outputs[role] = model_outputs(model, splits, device)
            if role != "candidate":
                cache[key] = (model, outputs[role])  # holding the model keeps its id() from being reused
        else:
            outputs[role] = cache[key][1]

    metrics, distributions = {}, {}
    for role, out in outputs.items():
        key = (f"{role}:metrics", id(models[role]), fingerprint)
        cached = cache.get(key) if role != "candidate" else None
        if cached is None:
            role_metrics, features = split_metrics(out, splits, kind=request_kind, goal=goal, forget_classes=classes, new_labels=targets, params=params)
            cached = (models[role], role_metrics, {name: features[name] for name in ("forget", "test")})
            if role != "candidate":
                cache[key] = cached
        metrics[role], distributions[role] = dict(cached[1]), cached[2]

    close: dict[str, dict[str, float]] = {}
    summary: dict[str, float] = {"candidate_seconds": float("nan") if candidate_seconds is None else float(candidate_seconds)}
    if original is not None:
        close["candidate_vs_original"] = closeness(outputs["candidate"], outputs["original"])
        close["candidate_vs_original"]["l2_weight_distance"] = M.l2_weight_distance(candidate, original)
    if reference is not None:
        for role in ("candidate", "original"):
            if role in outputs:
                close[f"{role}_vs_reference"] = closeness(outputs[role], outputs["reference"])
                summary[f"{role}_avg_gap"] = M.avg_gap(metrics[role], metrics["reference"])
                summary[f"{role}_tow"] = M.tow(metrics[role], metrics["reference"])
        close["candidate_vs_reference"]["l2_weight_distance"] = M.l2_weight_distance(candidate, reference)
    if reference_seconds is not None:
        summary["reference_seconds"] = float(reference_seconds)
        summary["speed_up"] = M.speed_up(reference_seconds, candidate_seconds or 0.0)

    decision = decide(
        metrics["candidate"],
        goal=goal,
        kind=request_kind,
        gate=params.gate,
        original=metrics.get("original"),
        reference=metrics.get("reference"),
        reference_required=reference_required,
        reference_note=reference_note,
    )
    sizes = {name: int(len(split.labels)) for name, split in splits.items()}
    return Evaluation(
        goal=goal,
        kind=request_kind,
        metrics=metrics,
        closeness=close,
        summary=summary,
        decision=decision,
        distributions=distributions,
        sizes=sizes,
        settings={"mia": params.mia.model_dump(), "gate": params.gate.model_dump(), "forget_classes": None if classes is None else [int(c) for c in classes]},
    )
