"""The `evaluation:` section of params.yaml: reference policy, MIA settings, promotion-gate thresholds.

Thresholds are in percentage points (accuracies and MIA scores are percentages). A `max_gap_*`
is two-sided (|candidate - reference|: under- and over-forgetting both miss); a `max_drop_*` is
one-sided (a candidate *better* than its comparison model passes).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field



class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReferenceParams(_Strict):
    policy: Literal["always", "every_n_batches", "never"] = "always"
    every_n_batches: int = Field(5, ge=1)
    seed: int = 1  # its own seed: the reference must not share the base model's initialisation
    nproc_per_node: int = Field(1, ge=1)  # > 1: DDP retrain under torchrun, one process per GPU (or CPU process)
    backend: Literal["auto", "gloo", "nccl"] = "auto"  # auto: nccl on CUDA, gloo on the CPU


class MiaParams(_Strict):
    seed: int = 0
    max_per_side: int = Field(5000, ge=10)
    loss_mia_splits: int = Field(10, ge=2)
    nonmember_split: Literal["test", "val"] = "test"


class ForgetGate(_Strict):
    """goal `forget` for sample and subject requests: behave like the reference."""

    max_gap_forget_accuracy: float = Field(3.0, ge=0)
    max_gap_mia_efficacy: float = Field(5.0, ge=0)
    max_gap_loss_mia: float | None = Field(None, ge=0)  # None: reported, not gated (noisy on small forget sets)
    max_drop_retain_accuracy: float = Field(3.0, ge=0)
    max_drop_test_accuracy: float = Field(3.0, ge=0)


class ClassGate(_Strict):
    """goal `forget` for class requests."""

    max_forget_class_accuracy: float = Field(1.0, ge=0, le=100)
    max_drop_retain_class_accuracy: float = Field(3.0, ge=0)
    max_gap_mia_efficacy: float = Field(5.0, ge=0)


class MisclassifyGate(_Strict):
    """goal `misclassify` (instance-wise unlearning, L2UL): judged against the original model."""

    max_forget_accuracy: float = Field(0.0, ge=0, le=100)
    max_drop_test_accuracy: float = Field(3.0, ge=0)
    max_drop_retain_accuracy: float = Field(3.0, ge=0)


class RelabelGate(_Strict):
    """goal `relabel`: the forget instances take their new label; judged against the original."""

    min_relabel_rate: float = Field(95.0, ge=0, le=100)
    max_drop_test_accuracy: float = Field(3.0, ge=0)
    max_drop_retain_accuracy: float = Field(3.0, ge=0)


class NoReferenceGate(_Strict):
    """Checks for goal `forget` when no reference is available: utility against the original only."""

    max_drop_test_accuracy: float = Field(3.0, ge=0)
    max_drop_retain_accuracy: float = Field(3.0, ge=0)


class GateParams(_Strict):
    forget: ForgetGate = ForgetGate()
    classes: ClassGate = ClassGate()
    misclassify: MisclassifyGate = MisclassifyGate()
    relabel: RelabelGate = RelabelGate()
    no_reference: NoReferenceGate = NoReferenceGate()


class EvaluationParams(_Strict):
    reference: ReferenceParams = ReferenceParams()
    mia: MiaParams = MiaParams()
    gate: GateParams = GateParams()


def evaluation_params(params) -> EvaluationParams:
    """Validate the `evaluation:` section of a loaded Params (defaults where it is absent)."""
    from forgetflow.params import params_section

    return params_section(params, "evaluation", EvaluationParams)
