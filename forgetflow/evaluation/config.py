"""The `evaluation:` section of params.yaml: reference policy, MIA settings, promotion-gate thresholds.

Thresholds are in percentage points (accuracies and MIA scores are percentages). A `max_gap_*`
is two-sided (|candidate - reference|: under- and over-forgetting both miss); a `max_drop_*` is
one-sided (a candidate *better* than its comparison model passes).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator



class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReferenceParams(_Strict):
    # always | every_n_batches | schedule | never. A batch without its own reference takes the fast
    # path (reference-free gate, provisional champion); the next reference verifies it (two clocks).
    policy: Literal["always", "every_n_batches", "schedule", "never"] = "always"
    every_n_batches: int = Field(5, ge=1)
    # policy `schedule`: batches never retrain; `forgetflow verify` runs on this cron instead
    # (nightly, weekly or a cron expression), served by `forgetflow serve`.
    schedule: str = "nightly"
    urgent_fast_path: bool = True  # a batch holding an urgent request takes the fast path under any policy but `never`

    @field_validator("schedule")
    @classmethod
    def _known_schedule(cls, value: str) -> str:
        if value in ("nightly", "weekly", "hourly") or len(value.split()) == 5:
            return value
        raise ValueError(f"schedule {value!r}: use nightly, weekly, hourly or a 5-field cron such as '0 3 * * 0'")
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
    """Checks for goal `forget` when no reference is available (the fast path): utility against the
    original (the previous champion), and, for sample and subject requests, the forget set against
    held-out val samples of the same classes: a model that never saw the forget set treats it like
    any unseen data of its classes."""

    max_drop_test_accuracy: float = Field(3.0, ge=0)
    max_drop_retain_accuracy: float = Field(3.0, ge=0)
    max_gap_heldout_accuracy: float | None = Field(8.0, ge=0)  # |forget acc - held-out acc (class mix of the forget set)|
    max_gap_heldout_loss_mia: float | None = Field(15.0, ge=0)  # |loss MIA forget vs held-out - 50| (50 = indistinguishable)
    max_gap_heldout_mia_efficacy: float | None = Field(15.0, ge=0)  # |MIA-efficacy on forget - on held-out|


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
