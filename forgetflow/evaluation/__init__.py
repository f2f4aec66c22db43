"""Evaluation against a retrained-from-scratch reference: metrics, MIAs, the challenge score, the
reference cache and policy, the promotion gate, and the report. No Prefect or MLflow here."""

from forgetflow.evaluation.config import EvaluationParams, evaluation_params
from forgetflow.evaluation.evaluate import Evaluation, evaluate_candidate
from forgetflow.evaluation.gate import Check, GateDecision, decide
from forgetflow.evaluation.reference import Reference, cached_references, ensure_reference, prune_references, reference_due, reference_for_version

__all__ = [
    "Check",
    "Evaluation",
    "EvaluationParams",
    "GateDecision",
    "Reference",
    "cached_references",
    "decide",
    "ensure_reference",
    "evaluate_candidate",
    "evaluation_params",
    "prune_references",
    "reference_due",
    "reference_for_version",
]
