"""The promotion gate: does a candidate behave enough like the reference to be deployed?

`decide()` is a pure function of metric dictionaries (candidate, original, reference) and the
thresholds of params.yaml `evaluation.gate`. Every check comes back with its value, threshold,
comparison and verdict, so the decision can be logged, rendered and audited as data.

Directions: for goal `forget`, forgetting and privacy metrics are two-sided gaps to the reference
(candidate above *or* below the reference by more than the threshold fails: under-forgetting and
over-forgetting are both misses), while utility metrics are one-sided drops (a candidate more
accurate than the reference passes). A NaN or missing metric fails its check: a gate that cannot
measure must not promote.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from forgetflow.evaluation.config import GateParams


@dataclass
class Check:
    name: str
    metric: str
    value: float  # what is compared to the threshold (a gap, a drop or a raw metric)
    threshold: float
    comparison: str  # "|gap| <=", "drop <=", "<=", ">="
    passed: bool
    against: str  # "reference", "original" or "" for absolute checks
    detail: str = ""


@dataclass
class GateDecision:
    passed: bool
    goal: str
    kind: str
    reference_used: bool
    reason: str
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # skipped checks and why

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]


def _number(metrics: dict | None, key: str) -> float:
    if metrics is None or key not in metrics or metrics[key] is None:
        return float("nan")
    return float(metrics[key])


def _nan_check(name: str, metric: str, threshold: float, comparison: str, against: str) -> Check:
    return Check(name, metric, float("nan"), threshold, comparison, False, against, f"{metric} is missing or NaN")


def gap_check(name: str, metric: str, candidate: dict, reference: dict, threshold: float, *, higher_means: str) -> Check:
    """|candidate - reference| <= threshold. `higher_means` names the failure when the candidate is
    above the reference ("under-forgetting" or "over-forgetting")."""
    gap = _number(candidate, metric) - _number(reference, metric)
    if math.isnan(gap):
        return _nan_check(name, metric, threshold, "|gap| <=", "reference")
    passed = abs(gap) <= threshold
    lower_means = "over-forgetting" if higher_means == "under-forgetting" else "under-forgetting"
    detail = "within threshold" if passed else (higher_means if gap > 0 else lower_means)
    return Check(name, metric, gap, threshold, "|gap| <=", passed, "reference", detail)


def drop_check(name: str, metric: str, candidate: dict, baseline: dict, threshold: float, against: str) -> Check:
    """baseline - candidate <= threshold; a candidate better than the baseline passes."""
    drop = _number(baseline, metric) - _number(candidate, metric)
    if math.isnan(drop):
        return _nan_check(name, metric, threshold, "drop <=", against)
    passed = drop <= threshold
    detail = ("better than the " + against) if drop < 0 else ("within threshold" if passed else f"utility lost against the {against}")
    return Check(name, metric, drop, threshold, "drop <=", passed, against, detail)


def bound_check(name: str, metric: str, candidate: dict, threshold: float, *, upper: bool) -> Check:
    value = _number(candidate, metric)
    comparison = "<=" if upper else ">="
    if math.isnan(value):
        return _nan_check(name, metric, threshold, comparison, "")
    passed = value <= threshold if upper else value >= threshold
    return Check(name, metric, value, threshold, comparison, passed, "", "within threshold" if passed else "goal not met")


def _forget_checks(candidate, original, reference, gate: GateParams, notes: list[str]) -> list[Check]:
    if reference is None:
        notes.append("no reference: closeness to a retrained model is NOT checked (the next reference verifies it); utility is checked against the original model, the forget set against held-out data of its classes")
        t = gate.no_reference
        return [
            drop_check("retain_accuracy_drop", "retain_accuracy", candidate, original, t.max_drop_retain_accuracy, "original"),
            drop_check("test_accuracy_drop", "test_accuracy", candidate, original, t.max_drop_test_accuracy, "original"),
            *_heldout_checks(candidate, t, notes),
        ]
    t = gate.forget
    checks = [
        gap_check("forget_accuracy_gap", "forget_accuracy", candidate, reference, t.max_gap_forget_accuracy, higher_means="under-forgetting"),
        gap_check("mia_efficacy_gap", "mia_efficacy", candidate, reference, t.max_gap_mia_efficacy, higher_means="over-forgetting"),
    ]
    if t.max_gap_loss_mia is not None:
        checks.append(gap_check("loss_mia_gap", "loss_mia", candidate, reference, t.max_gap_loss_mia, higher_means="under-forgetting"))
    else:
        notes.append("loss-threshold MIA reported, not gated (evaluation.gate.forget.max_gap_loss_mia is null)")
    checks += [
        drop_check("retain_accuracy_drop", "retain_accuracy", candidate, reference, t.max_drop_retain_accuracy, "reference"),
        drop_check("test_accuracy_drop", "test_accuracy", candidate, reference, t.max_drop_test_accuracy, "reference"),
    ]
    return checks


def _heldout_checks(candidate: dict, t, notes: list[str]) -> list[Check]:
    """Forget set vs held-out val samples of the same classes (reference-free): each gap is
    two-sided, since forgetting far past unseen data is as visible to an attacker as remembering."""
    pairs = (
        ("heldout_accuracy_gap", "forget_accuracy", "heldout_accuracy", t.max_gap_heldout_accuracy, "under-forgetting"),
        ("heldout_mia_efficacy_gap", "mia_efficacy", "heldout_mia_efficacy", t.max_gap_heldout_mia_efficacy, "over-forgetting"),
    )
    checks = []
    for name, metric, heldout, threshold, higher_means in pairs:
        if threshold is None:
            notes.append(f"{name} reported, not gated (evaluation.gate.no_reference threshold is null)")
            continue
        check = gap_check(name, metric, candidate, {metric: _number(candidate, heldout)}, threshold, higher_means=higher_means)
        checks.append(Check(check.name, check.metric, check.value, check.threshold, check.comparison, check.passed, "held-out", check.detail))
    if t.max_gap_heldout_loss_mia is not None:
        check = gap_check("heldout_loss_mia_gap", "heldout_loss_mia", candidate, {"heldout_loss_mia": 50.0}, t.max_gap_heldout_loss_mia, higher_means="under-forgetting")
        checks.append(Check(check.name, check.metric, check.value, check.threshold, check.comparison, check.passed, "held-out", check.detail if check.passed or check.value != check.value else f"{check.detail}: the loss tells forget from held-out"))
    return checks


def _class_checks(candidate, original, reference, gate: GateParams, notes: list[str]) -> list[Check]:
    t = gate.classes
    checks = [bound_check("forget_class_test_accuracy", "forget_class_test_accuracy", candidate, t.max_forget_class_accuracy, upper=True)]
    baseline, against = (reference, "reference") if reference is not None else (original, "original")
    checks.append(drop_check("retain_class_test_accuracy_drop", "retain_class_test_accuracy", candidate, baseline, t.max_drop_retain_class_accuracy, against))
    if reference is not None:
        checks.append(gap_check("mia_efficacy_gap", "mia_efficacy", candidate, reference, t.max_gap_mia_efficacy, higher_means="over-forgetting"))
    else:
        notes.append("no reference: MIA-efficacy closeness is NOT checked; retain-class accuracy is checked against the original model")
    return checks


def _instance_checks(goal: str, candidate, original, gate: GateParams, notes: list[str]) -> list[Check]:
    notes.append(f"goal `{goal}` is judged against the original model (a retrained model is not its target)")
    if goal == "misclassify":
        t = gate.misclassify
        first = bound_check("forget_accuracy", "forget_accuracy", candidate, t.max_forget_accuracy, upper=True)
    else:
        t = gate.relabel
        first = bound_check("relabel_rate", "relabel_rate", candidate, t.min_relabel_rate, upper=False)
    return [
        first,
        drop_check("retain_accuracy_drop", "retain_accuracy", candidate, original, t.max_drop_retain_accuracy, "original"),
        drop_check("test_accuracy_drop", "test_accuracy", candidate, original, t.max_drop_test_accuracy, "original"),
    ]


def decide(
    candidate: dict,
    *,
    goal: str,
    kind: str,
    gate: GateParams,
    original: dict | None = None,
    reference: dict | None = None,
    reference_required: bool = False,
    reference_note: str = "",
) -> GateDecision:
    """Gate one candidate. `reference_required` (policy said a reference is due) makes a missing
    reference a failed check instead of a fallback to the checks that need none."""
    notes = [reference_note] if reference_note else []
    checks: list[Check] = []
    if reference is None and reference_required and goal == "forget":
        checks.append(Check("reference_available", "reference", float("nan"), float("nan"), "present", False, "reference", "the reference policy requires a reference and none was given"))
    if goal == "forget":
        checks += (_class_checks if kind == "classes" else _forget_checks)(candidate, original, reference, gate, notes)
    elif goal in ("misclassify", "relabel"):
        checks += _instance_checks(goal, candidate, original, gate, notes)
    else:
        from forgetflow.errors import ConfigError

        raise ConfigError(f"unknown goal {goal!r}", "goal must be one of forget, misclassify, relabel")
    failed = [c for c in checks if not c.passed]
    if failed:
        reason = "REJECTED: " + "; ".join(_describe(c) for c in failed)
    else:
        reason = f"PROMOTABLE: all {len(checks)} checks within thresholds"
    if reference is None and goal == "forget":
        reason += " (without a reference: forgetting closeness unchecked)"
    return GateDecision(passed=not failed, goal=goal, kind=kind, reference_used=reference is not None and goal == "forget", reason=reason, checks=checks, notes=notes)


def _describe(check: Check) -> str:
    if math.isnan(check.value):
        return f"{check.name}: {check.detail}"
    sign = "+" if check.comparison in ("|gap| <=", "drop <=") else ""
    return f"{check.name} = {check.value:{sign}.2f} (needs {check.comparison} {check.threshold:g}: {check.detail})"
