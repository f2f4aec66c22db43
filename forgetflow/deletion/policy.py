"""The `unlearning:` section of params.yaml: which method serves which request kind and goal,
the order of groups in a mixed batch, and what happens when the gate rejects a candidate."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from forgetflow.errors import ConfigError

# Order of groups in one batch, and why:
#  1. classes/forget first: removing whole classes changes the label space every later step works
#     in; sample requests inside a removed class are then already covered and are not unlearned twice.
#  2. samples and subjects with goal forget next, on the class-forgotten model.
#  3. misclassify/relabel last: their success criterion (every forget instance predicted away
#     from its label, or as the new label) must hold for the final model, so nothing runs after them.
GROUP_ORDER: tuple[tuple[str, str], ...] = (
    ("classes", "forget"),
    ("instances", "forget"),
    ("instances", "misclassify"),
    ("instances", "relabel"),
)


class UnlearningPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    methods: dict[str, dict[str, str]] = Field(
        default_factory=lambda: {
            "classes": {"forget": "svd_projection"},
            "samples": {"forget": "pgu", "misclassify": "l2ul", "relabel": "l2ul"},
            "subjects": {"forget": "pgu", "misclassify": "l2ul", "relabel": "l2ul"},
        }
    )
    configs: dict[str, dict] = Field(default_factory=dict, description="per-method hyperparameter overrides")
    retain_sample_size: int = Field(2000, ge=10, description="retained train samples given to methods that need a retain set")
    time_budget_s: float | None = Field(900, description="per method call; None = no budget")
    on_gate_failure: Literal["promote_reference", "keep_champion"] = "promote_reference"
    seed: int = 0

    def method_for(self, kind: str, goal: str, override: str | None = None) -> str:
        if override:
            return override
        try:
            return self.methods[kind][goal]
        except KeyError:
            raise ConfigError(f"no unlearning method configured for {kind} requests with goal {goal}", "add it under unlearning.methods in params.yaml") from None


def unlearning_policy(params) -> UnlearningPolicy:
    from forgetflow.params import params_section

    return params_section(params, "unlearning", UnlearningPolicy)
