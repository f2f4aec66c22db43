"""The method registry interface: what a method declares and what it returns.

Callers use `forgetflow.methods.unlearn(name, model, forget, *, retain=None, val=None, stats=None,
config=None, seed=0, device="cpu", kind="samples", goal="forget", time_budget_s=None,
progress=True) -> UnlearnResult`, which checks the request and the inputs, deep-copies the model
and calls the method's `fn(model_copy, forget, *, retain, val, stats, config, seed, device,
time_budget_s, progress[, kind, goal])` with `config` already merged with the paper defaults.

`forget`, `retain` and `val` are `forgetflow.data.store.LoadedSplit` objects (uint8 images,
int64 labels, sample IDs). `stats` is the checkpoint's `layer_stats` (PGU). A method never modifies
the model it is given: it returns a new one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

from forgetflow.errors import ForgetflowError

KINDS = ("samples", "subjects", "classes")
GOALS = ("forget", "misclassify", "relabel")
Needs = Literal["forget", "retain", "val", "stats"]


@dataclass
class UnlearnResult:
    model: Any  # torch.nn.Module
    seconds: float  # wall time including one-off costs (masks, importance, adversarial examples)
    config: dict  # the full config actually used (defaults merged with overrides)
    log: list[dict] = field(default_factory=list)  # per-epoch/step diagnostics
    stopped_because: str = ""  # why it stopped: criterion met, epochs done, time budget
    extra: dict = field(default_factory=dict)  # method-specific outputs (e.g. updated stats for PGU)


@dataclass(frozen=True)
class MethodInfo:
    name: str
    summary: str
    paper: str
    kinds: tuple[str, ...]
    goals: tuple[str, ...]
    needs: tuple[str, ...]  # subset of ("forget", "retain", "val", "stats")
    defaults: dict
    search_space: dict  # name -> list of candidate values
    fn: Callable[..., UnlearnResult]
    # Optional extra check of the inputs (called by `forgetflow.methods.unlearn` before the method
    # runs): fn(config, retain=, val=, stats=, kind=, goal=) raising MissingInputError.
    check: Callable[..., None] | None = None

    def serves(self, kind: str, goal: str) -> bool:
        return kind in self.kinds and goal in self.goals


REGISTRY: dict[str, MethodInfo] = {}


class MethodError(ForgetflowError):
    """An unlearning method cannot run as asked."""


class UnknownMethodError(MethodError):
    """No method of that name is registered."""


class UnsupportedRequestError(MethodError):
    """The method does not serve this request kind or goal."""


class MissingInputError(MethodError):
    """The method needs an input (retain sample, validation split, stored statistics) it was not given."""


def register(info: MethodInfo) -> MethodInfo:
    if info.name in REGISTRY:
        raise ValueError(f"method {info.name!r} registered twice")
    REGISTRY[info.name] = info
    return info


class Timer:
    """Wall time of a method, including its one-off costs, with an optional budget."""

    def __init__(self, budget_s: float | None = None):
        self.start = time.perf_counter()
        self.budget_s = budget_s

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def over_budget(self) -> bool:
        return self.budget_s is not None and self.elapsed > self.budget_s
