"""The method registry and the one call signature every unlearning method shares.

    unlearn(model, forget, *, retain=None, val=None, stats=None, config=None, seed=0,
            device="cpu", time_budget_s=None, progress=True) -> UnlearnResult

`forget`, `retain` and `val` are `forgetflow.data.store.LoadedSplit` objects (uint8 images,
int64 labels, sample IDs). `stats` is the checkpoint's `layer_stats` (PGU). `config` holds
hyperparameters; missing keys take the method's paper defaults. A method never modifies the
model it is given: it returns a new one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

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

    def serves(self, kind: str, goal: str) -> bool:
        return kind in self.kinds and goal in self.goals


REGISTRY: dict[str, MethodInfo] = {}


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
