"""Promotion gate: both failure directions, edge cases, and the params.yaml section."""

from __future__ import annotations

import pytest

from forgetflow.errors import ConfigError
from forgetflow.evaluation.config import EvaluationParams, GateParams, ReferenceParams, evaluation_params
from forgetflow.evaluation.gate import decide
from forgetflow.evaluation.reference import reference_due
from forgetflow.params import Params

GATE = GateParams()
REFERENCE = {"forget_accuracy": 96.0, "retain_accuracy": 100.0, "test_accuracy": 96.0, "mia_efficacy": 20.0, "loss_mia": 50.0}
ORIGINAL = {"forget_accuracy": 100.0, "retain_accuracy": 100.0, "test_accuracy": 97.0, "mia_efficacy": 0.0, "loss_mia": 62.0}


def check(decision, name):
    return next(c for c in decision.checks if c.name == name)


def test_retrain_like_candidate_passes_with_every_check_reported():
    candidate = {"forget_accuracy": 95.0, "retain_accuracy": 100.0, "test_accuracy": 95.5, "mia_efficacy": 22.0, "loss_mia": 49.0}
    decision = decide(candidate, goal="forget", kind="samples", gate=GATE, original=ORIGINAL, reference=REFERENCE)
    assert decision.passed and decision.reference_used
    assert {c.name for c in decision.checks} == {"forget_accuracy_gap", "mia_efficacy_gap", "retain_accuracy_drop", "test_accuracy_drop"}
    gap = check(decision, "forget_accuracy_gap")
    assert (gap.value, gap.threshold, gap.comparison, gap.against) == (-1.0, 3.0, "|gap| <=", "reference")
    assert decision.reason.startswith("PROMOTABLE")
    assert decision.as_dict()["checks"][0]["name"] == "forget_accuracy_gap"


def test_under_forgetting_candidate_is_rejected():
    decision = decide(ORIGINAL, goal="forget", kind="subjects", gate=GATE, original=ORIGINAL, reference=REFERENCE)
    assert not decision.passed
    assert check(decision, "forget_accuracy_gap").detail == "under-forgetting"
    assert check(decision, "mia_efficacy_gap").detail == "under-forgetting"
    assert "REJECTED" in decision.reason and "mia_efficacy_gap" in decision.reason


def test_over_forgetting_candidate_is_rejected():
    destroyed = {"forget_accuracy": 10.0, "retain_accuracy": 11.0, "test_accuracy": 10.0, "mia_efficacy": 100.0, "loss_mia": 50.0}
    decision = decide(destroyed, goal="forget", kind="samples", gate=GATE, original=ORIGINAL, reference=REFERENCE)
    assert not decision.passed
    assert check(decision, "forget_accuracy_gap").detail == "over-forgetting"
    assert check(decision, "mia_efficacy_gap").detail == "over-forgetting"
    assert not check(decision, "test_accuracy_drop").passed
    # Forgetting a little too much, with utility intact, is still a miss.
    slightly = {**REFERENCE, "forget_accuracy": 90.0, "mia_efficacy": 30.0}
    assert not decide(slightly, goal="forget", kind="samples", gate=GATE, reference=REFERENCE).passed


def test_candidate_more_accurate_than_the_reference_passes_utility_checks():
    better = {**REFERENCE, "test_accuracy": 99.0, "retain_accuracy": 100.0}
    decision = decide(better, goal="forget", kind="samples", gate=GATE, original=ORIGINAL, reference=REFERENCE)
    assert decision.passed
    drop = check(decision, "test_accuracy_drop")
    assert drop.value == -3.0 and drop.detail == "better than the reference"


def test_nan_or_missing_metric_fails_its_check():
    nan_mia = {**REFERENCE, "mia_efficacy": float("nan")}
    decision = decide(nan_mia, goal="forget", kind="samples", gate=GATE, reference=REFERENCE)
    assert not decision.passed
    assert "missing or NaN" in check(decision, "mia_efficacy_gap").detail
    missing = {k: v for k, v in REFERENCE.items() if k != "test_accuracy"}
    assert not decide(missing, goal="forget", kind="samples", gate=GATE, reference=REFERENCE).passed


def test_missing_reference_falls_back_to_reference_free_checks_and_says_so():
    # The fast path: utility against the original, the forget set against held-out data of its classes.
    retrain_like = {**REFERENCE, "heldout_accuracy": REFERENCE["forget_accuracy"] + 2.0, "heldout_loss_mia": 53.0, "heldout_mia_efficacy": REFERENCE["mia_efficacy"] - 4.0}
    decision = decide(retrain_like, goal="forget", kind="samples", gate=GATE, original=ORIGINAL, reference=None, reference_note="reference policy `never`")
    assert decision.passed and not decision.reference_used
    assert {c.against for c in decision.checks} == {"original", "held-out"}
    assert {c.name for c in decision.checks} >= {"heldout_accuracy_gap", "heldout_loss_mia_gap", "heldout_mia_efficacy_gap"}
    assert any("NOT checked" in note for note in decision.notes)
    assert "reference policy `never`" in decision.notes
    assert "forgetting closeness unchecked" in decision.reason
    # Doing nothing: the original still fits its forget set far better than unseen data of its classes.
    remembers = {**ORIGINAL, "heldout_accuracy": 90.0, "heldout_loss_mia": 75.0, "heldout_mia_efficacy": 20.0}
    nothing = decide(remembers, goal="forget", kind="samples", gate=GATE, original=ORIGINAL, reference=None)
    assert not nothing.passed and check(nothing, "heldout_accuracy_gap").detail == "under-forgetting"
    assert not check(nothing, "heldout_loss_mia_gap").passed
    # A held-out metric that could not be measured (NaN, missing) fails: the fast path must not promote blind.
    assert not decide(REFERENCE, goal="forget", kind="samples", gate=GATE, original=ORIGINAL, reference=None).passed
    required = decide(REFERENCE, goal="forget", kind="samples", gate=GATE, original=ORIGINAL, reference=None, reference_required=True)
    assert not required.passed and not check(required, "reference_available").passed


def test_loss_mia_is_gated_only_when_a_threshold_is_set():
    params = EvaluationParams.model_validate({"gate": {"forget": {"max_gap_loss_mia": 5.0}}})
    candidate = {**REFERENCE, "loss_mia": 62.0}
    assert decide(candidate, goal="forget", kind="samples", gate=GATE, reference=REFERENCE).passed
    decision = decide(candidate, goal="forget", kind="samples", gate=params.gate, reference=REFERENCE)
    assert not decision.passed and check(decision, "loss_mia_gap").detail == "under-forgetting"


def test_class_request_gate():
    reference = {"forget_class_test_accuracy": 0.0, "retain_class_test_accuracy": 97.0, "mia_efficacy": 100.0}
    good = {"forget_class_test_accuracy": 0.5, "retain_class_test_accuracy": 96.0, "mia_efficacy": 98.0}
    assert decide(good, goal="forget", kind="classes", gate=GATE, reference=reference).passed
    remembers = {**good, "forget_class_test_accuracy": 40.0}
    assert not decide(remembers, goal="forget", kind="classes", gate=GATE, reference=reference).passed
    # No reference: forget-class accuracy is absolute, retain-class accuracy is judged against the original.
    original = {"forget_class_test_accuracy": 98.0, "retain_class_test_accuracy": 97.0}
    decision = decide(good, goal="forget", kind="classes", gate=GATE, original=original)
    assert decision.passed and check(decision, "retain_class_test_accuracy_drop").against == "original"


def test_misclassify_and_relabel_are_judged_against_the_original():
    original = {"forget_accuracy": 100.0, "retain_accuracy": 99.0, "test_accuracy": 97.0}
    done = {"forget_accuracy": 0.0, "retain_accuracy": 98.0, "test_accuracy": 96.0, "relabel_rate": 100.0}
    assert decide(done, goal="misclassify", kind="samples", gate=GATE, original=original).passed
    assert not decide({**done, "forget_accuracy": 5.0}, goal="misclassify", kind="samples", gate=GATE, original=original).passed
    assert not decide({**done, "test_accuracy": 80.0}, goal="misclassify", kind="samples", gate=GATE, original=original).passed
    assert decide(done, goal="relabel", kind="samples", gate=GATE, original=original).passed
    low = decide({**done, "relabel_rate": 60.0}, goal="relabel", kind="samples", gate=GATE, original=original)
    assert not low.passed and check(low, "relabel_rate").comparison == ">="
    assert not decide(done, goal="relabel", kind="samples", gate=GATE, original=None).passed  # nothing to compare utility with


def test_unknown_goal_is_a_config_error():
    with pytest.raises(ConfigError):
        decide(REFERENCE, goal="vanish", kind="samples", gate=GATE)


def test_params_section_is_validated_with_defaults():
    assert evaluation_params(Params()).reference.policy == "always"
    params = Params.model_validate({"evaluation": {"reference": {"policy": "never"}, "gate": {"forget": {"max_gap_mia_efficacy": 2.5}}}})
    parsed = evaluation_params(params)
    assert parsed.reference.policy == "never" and parsed.gate.forget.max_gap_mia_efficacy == 2.5
    with pytest.raises(ConfigError, match="evaluation.reference.policy"):
        evaluation_params(Params.model_validate({"evaluation": {"reference": {"policy": "sometimes"}}}))
    with pytest.raises(ConfigError):
        evaluation_params(Params.model_validate({"evaluation": {"gate": {"forget": {"max_gap_forget_accuracy": -1}}}}))


def test_repository_params_yaml_has_a_valid_evaluation_section():
    from pathlib import Path

    from forgetflow.params import load_params

    root = Path(__file__).resolve().parent.parent
    parsed = evaluation_params(load_params(root / "params.yaml"))
    assert parsed.reference.policy in ("always", "every_n_batches", "never")


def test_reference_policy():
    assert reference_due(ReferenceParams(policy="always"), 3)[0]
    due, reason = reference_due(ReferenceParams(policy="never"), 3)
    assert not due and "never" in reason
    every = ReferenceParams(policy="every_n_batches", every_n_batches=3)
    assert [reference_due(every, b)[0] for b in range(1, 7)] == [False, False, True, False, False, True]
    assert "not due" in reference_due(every, 4)[1]
