"""Safety limits for forget sets: the `validation:` section of params.yaml."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from forgetflow.params import Params, params_section


class ValidationLimits(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # At most this fraction of the train split in one forget set (larger: retrain instead).
    max_forget_fraction: float = Field(0.30, gt=0.0, le=1.0)
    # Sample and subject requests must leave every class they touch at least this many train samples:
    # removing a whole class takes a class request.
    min_class_samples_left: int = Field(1, ge=1)
    # Every request must leave at least this many classes with train samples (a classifier needs two).
    min_classes_left: int = Field(2, ge=2)

    def max_forget_train(self, n_train: int) -> int:
        return int(self.max_forget_fraction * n_train)


def load_limits(params: Params) -> ValidationLimits:
    return params_section(params, "validation", ValidationLimits)
