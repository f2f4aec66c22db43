"""The method ladder: try unlearning methods in order, gate each candidate, keep the first that passes.

    climb(rungs, model, forget, ..., gate=...) -> LadderResult

A rung is data: a method name, a config (overrides of the method's paper defaults) and a time
budget. The caller supplies `gate(model, seconds) -> GateVerdict`, built once per request group
(against the batch's one reference, or the reference-free checks), so every rung is judged by the
same yardstick. `done` carries the outcomes of rungs that already ran (a resumed batch): those
rungs are not run again. `on_outcome` is called after every rung, before the next one starts, so
the caller can persist it (batch state) and a crash resumes at the next rung.

Nothing here imports Prefect, MLflow or DVC: the deletion flow and the benchmarks use the same code.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class Rung(BaseModel):
    """One step of a ladder: `method` with `config` overrides, stopped after `time_budget_s`."""

    model_config = ConfigDict(extra="forbid")

    method: str
    config: dict = Field(default_factory=dict)
    time_budget_s: float | None = Field(None, gt=0, description="None: the policy's unlearning.time_budget_s")

    def label(self) -> str:
        extra = ", ".join(f"{k}={v}" for k, v in sorted(self.config.items()))
        return f"{self.method}({extra})" if extra else self.method


@dataclass
class GateVerdict:
    passed: bool
    reason: str
    metrics: dict = field(default_factory=dict)  # a few flat numbers for the record (no sample IDs)


@dataclass
class RungOutcome:
    index: int
    method: str
    config: dict  # the full config the method ran with
    passed: bool
    reason: str
    seconds: float
    stopped_because: str = ""
    metrics: dict = field(default_factory=dict)
    attempt: int = 0  # 0 = first climb; 1.. = retries (on_gate_failure: retry)
    error: str = ""  # the method could not run (bad config, missing input): the rung fails, the ladder goes on

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "RungOutcome":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass
class LadderResult:
    outcomes: list[RungOutcome]
    accepted: int | None  # position in `outcomes` of the first passing rung, None when every rung failed
    result: object | None  # the UnlearnResult of the last rung run in this call (the accepted one, if any)

    @property
    def passed(self) -> bool:
        return self.accepted is not None

    @property
    def rungs_tried(self) -> int:
        return len(self.outcomes)


def climb(
    rungs: list[Rung],
    model,
    forget,
    *,
    gate: Callable[[object, float], GateVerdict],
    retain=None,
    val=None,
    stats=None,
    kind: str = "samples",
    goal: str = "forget",
    seed: int = 0,
    device: str = "cpu",
    default_budget_s: float | None = None,
    attempt: int = 0,
    progress: bool = True,
    done: list[RungOutcome] | None = None,
    on_outcome: Callable[[RungOutcome, object], None] | None = None,
    new_labels=None,
) -> LadderResult:
    """Run the rungs in order until one passes `gate`. Each rung starts from `model` (the same
    starting point: a failed rung's damage is not carried into the next). A rung whose method
    raises a forgetflow error (bad config, missing input) is recorded as failed with that error,
    and the ladder goes on: one misconfigured rung must not cost the batch its other rungs."""
    from forgetflow.errors import ForgetflowError
    from forgetflow.methods import unlearn

    outcomes = [o for o in (done or []) if o.attempt == attempt]
    for outcome in outcomes:
        if outcome.passed:
            return LadderResult(outcomes, outcomes.index(outcome), None)
    result = None
    for index, rung in enumerate(rungs):
        if index < len(outcomes):
            continue  # ran before a crash; its outcome is recorded
        budget = rung.time_budget_s if rung.time_budget_s is not None else default_budget_s
        try:
            rung_forget, config = relabel_inputs(rung.method, forget, rung.config, new_labels) if goal == "relabel" else (forget, rung.config)
            result = unlearn(rung.method, model, rung_forget, retain=retain, val=val, stats=stats, config=config, seed=seed + 1000 * attempt, device=device, kind=kind, goal=goal, time_budget_s=budget, progress=progress)
        except ForgetflowError as exc:
            outcome = RungOutcome(index, rung.method, dict(rung.config), False, f"could not run: {exc.message}", 0.0, attempt=attempt, error=exc.message)
            outcomes.append(outcome)
            if on_outcome is not None:
                on_outcome(outcome, None)
            continue
        try:
            verdict = gate(result.model, result.seconds)
        except (ValueError, FloatingPointError, RuntimeError) as exc:
            # A diverged candidate (non-finite outputs) cannot even be measured: it fails the rung.
            verdict = GateVerdict(False, f"REJECTED: the candidate could not be evaluated ({'non-finite outputs: the method diverged' if not _finite(result.model) or 'NaN' in str(exc) or 'infinity' in str(exc) else exc})")
        outcome = RungOutcome(index, rung.method, public_config(result.config), verdict.passed, verdict.reason, float(result.seconds), result.stopped_because, dict(verdict.metrics), attempt)
        outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome, result)
        if verdict.passed:
            return LadderResult(outcomes, len(outcomes) - 1, result)
    return LadderResult(outcomes, None, result)


def _finite(model) -> bool:
    import torch

    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def relabel_inputs(method: str, forget, config: dict, new_labels):
    """Goal relabel: `forget` carries the true labels and `new_labels` the targets. A method that
    takes the targets as a hyperparameter (`new_labels` among its defaults, as L2UL) gets them
    there; any other gets a forget set whose labels are the targets."""
    from forgetflow.data.store import LoadedSplit
    from forgetflow.methods import get_method
    from forgetflow.methods.base import MissingInputError

    if new_labels is None:
        raise MissingInputError(f"{method}: goal relabel needs the new label of each forget instance", "pass new_labels to the ladder")
    targets = [int(v) for v in new_labels]
    if "new_labels" in get_method(method).defaults:
        return forget, {**config, "new_labels": targets}
    return LoadedSplit(forget.images, np.asarray(targets, dtype=np.int64), forget.sample_ids), config


def public_config(config: dict) -> dict:
    """The config as recorded (batch state, ledger, MLflow): per-instance targets are summarised."""
    out = dict(config)
    if isinstance(out.get("new_labels"), list):
        out["new_labels"] = f"<{len(out['new_labels'])} per-instance targets>"
    return out


# The numbers kept per rung in the ledger, the batch state and MLflow: enough to see why a rung
# failed, nothing that identifies a sample.
VERDICT_METRICS = (
    "forget_accuracy", "retain_accuracy", "test_accuracy", "val_accuracy", "mia_efficacy",
    "misclassified_rate", "relabel_rate", "forget_class_test_accuracy", "retain_class_test_accuracy",
)


def evaluation_gate(original, reference, *, forget, retain, val, test, kind: str, goal: str, params, forget_classes=None, new_labels=None, reference_required: bool = False, reference_note: str = "", reference_seconds: float | None = None, device: str = "cpu") -> Callable[[object, float], GateVerdict]:
    """A gate for `climb` built on `evaluate_candidate`: the original's and the reference's outputs
    are computed once and reused for every rung (they do not change between rungs)."""
    from forgetflow.evaluation.evaluate import evaluate_candidate

    cache: dict = {}

    def gate(candidate, seconds: float) -> GateVerdict:
        evaluation = evaluate_candidate(
            original, candidate, reference, forget=forget, retain=retain, val=val, test=test,
            request_kind=kind, goal=goal, forget_classes=forget_classes, new_labels=new_labels, params=params,
            candidate_seconds=seconds, reference_seconds=reference_seconds, reference_required=reference_required,
            reference_note=reference_note, device=device, outputs_cache=cache,
        )
        numbers = {k: round(float(v), 4) for k, v in evaluation.metrics["candidate"].items() if k in VERDICT_METRICS and v == v}
        gap = evaluation.summary.get("candidate_avg_gap")
        if gap is not None and gap == gap:
            numbers["avg_gap"] = round(float(gap), 4)
        return GateVerdict(evaluation.decision.passed, evaluation.decision.reason, numbers)

    return gate
