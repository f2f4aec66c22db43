"""The `unlearning:` section of params.yaml: which method ladder serves which request kind and goal,
the order of groups in a mixed batch, and what happens when every rung fails the gate.

Where a (kind, goal) ladder comes from, first match wins:
  1. `--method M` for one run (a one-rung ladder);
  2. `unlearning.methods.<kind>.<goal>` in params.yaml (a method name, or a list of rungs);
  3. `.forgetflow/calibration.json`, written by `forgetflow calibrate` on this workspace's own model
     and data (unless `unlearning.use_calibration: false`);
  4. the shipped defaults below, chosen from the benchmark (BENCHMARKS.md, "Method ladder").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from forgetflow.errors import ConfigError
from forgetflow.ladder import Rung

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

# The shipped ladders. Chosen by what passes the gate on the discriminative benchmark (an original
# that memorises its training data: BENCHMARKS.md, "Method ladder"), then by time: a method whose
# candidate never passes the gate is not a default, whatever its paper. Tuned on seeds 0, 1, 3 of
# that benchmark; seeds 2 and 4 were not looked at before the 5-seed run.
# - samples/subjects: no method at its paper default passed there (each under- or over-forgets);
#   NegGrad+ with forgetflow's held-out stop rule (stop once the forget set is as accurate as
#   held-out data of its classes) did, but its ascent costs retain accuracy, which the gate checks
#   against a reference that fits its training data. forgetflow's repair step (`repair_epochs`:
#   fine-tuning on the retained data while the forget set is held at the held-out level) won that
#   back for random samples (3/3 seeds, against 1/3 without); for subjects it left the loss-based
#   MIA gap past the gate (0/3, against 2/3 without), so the two kinds try them in opposite order.
#   Where both under-forget by the gate's confidence attack (MIA-efficacy gap -8 on a seed where
#   every rung failed), the same NegGrad+ stopped at held-out confidence, not only accuracy
#   (`heldout_stop: confidence`), passed; on the two subject requests where every rung failed it
#   did not (MIA gap still -7 and -9), so subjects do not spend its time. (The benchmark's
#   subjects are 4 random samples each, so the two kinds differ by draw, not by nature: with 5
#   seeds per kind, these orders are evidence at that resolution.) SCRUB+R, a different family,
#   is the last rung.
# - classes: SalUn and the SVD projection at their defaults lost 4-6 points of retain-class
#   accuracy there. The SVD projection (seed paper, gradient-free, seconds) followed by the repair
#   step (for classes: fine-tuning on the retained data with a bounded term that keeps the
#   forgotten class's probability down) passed on 3/3 seeds.
# - misclassify/relabel: NegGrad+ with its stop rule and a retain term works once the forget term
#   is bounded: for misclassify, descent towards each instance's runner-up class (flip_to:
#   runner_up), beta 0.97. L2UL (seed paper, forget set only) is not a shipped rung: it flipped
#   nothing or wrecked the model (-56 to -88 test points) on every request measured, digits and
#   Fashion-MNIST, and as a last rung it only spent its time budget before the batch fell back.
#   It stays a `--method` choice and a calibration candidate, which adds it where it passes.
_NEGGRAD_HELDOUT = {"method": "neggrad_plus", "config": {"beta": 0.9, "heldout_stop": True, "epochs": 20}}
_NEGGRAD_HELDOUT_REPAIR = {"method": "neggrad_plus", "config": {"beta": 0.9, "heldout_stop": True, "epochs": 20, "repair_epochs": 3}}
_NEGGRAD_CONFIDENCE = {"method": "neggrad_plus", "config": {"beta": 0.9, "heldout_stop": "confidence", "epochs": 20}}
_SAMPLES_FORGET = [_NEGGRAD_HELDOUT_REPAIR, _NEGGRAD_HELDOUT, _NEGGRAD_CONFIDENCE, {"method": "scrub_rewind"}]
_SUBJECTS_FORGET = [_NEGGRAD_HELDOUT, _NEGGRAD_HELDOUT_REPAIR, {"method": "scrub_rewind"}]
_CLASSES_FORGET = [
    {"method": "svd_projection", "config": {"repair_epochs": 1}},
    {"method": "svd_projection", "config": {"repair_epochs": 3}},
    {"method": "salun", "config": {"repair_epochs": 2}},
]
_INSTANCE_MISCLASSIFY = [
    {"method": "neggrad_plus", "config": {"flip_to": "runner_up", "beta": 0.97, "epochs": 30}},
    {"method": "neggrad_plus", "config": {"flip_to": "runner_up", "beta": 0.99, "epochs": 60}},
]
_INSTANCE_RELABEL = [
    {"method": "neggrad_plus", "config": {"beta": 0.97, "epochs": 30}},
]
SHIPPED_LADDERS: dict[str, dict[str, list[dict]]] = {
    "classes": {"forget": _CLASSES_FORGET},
    "samples": {"forget": _SAMPLES_FORGET, "misclassify": _INSTANCE_MISCLASSIFY, "relabel": _INSTANCE_RELABEL},
    "subjects": {"forget": _SUBJECTS_FORGET, "misclassify": _INSTANCE_MISCLASSIFY, "relabel": _INSTANCE_RELABEL},
}

def _as_ladder(value, where: str = "ladder") -> list[Rung]:
    from pydantic import ValidationError

    items = value if isinstance(value, list) else [value]
    if not items:
        raise ValueError(f"{where}: a ladder needs at least one rung")
    rungs = []
    for position, item in enumerate(items):
        try:
            rungs.append(Rung(method=item) if isinstance(item, str) else Rung.model_validate(item))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ValueError(f"{where}[{position}] (rung {position + 1}): {problems}") from None
    return rungs


class UnlearningPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    methods: dict[str, dict[str, list[Rung]]] = Field(default_factory=dict, description="per kind and goal: one method name or a list of rungs; unset pairs use the calibration or the shipped ladder")
    configs: dict[str, dict] = Field(default_factory=dict, description="per-method hyperparameter overrides, applied under each rung's own config")
    use_calibration: bool = True
    retain_sample_size: int = Field(2000, ge=10, description="retained train samples given to methods that need a retain set")
    time_budget_s: float | None = Field(900, gt=0, description="per rung unless the rung sets its own; None = no budget")
    on_gate_failure: Literal["promote_reference", "keep_champion", "retry"] = "promote_reference"
    retry_attempts: int = Field(1, ge=1, le=5, description="with on_gate_failure: retry, climbs of the ladder after the first, each with a new seed")
    superseded: Literal["keep", "quarantine", "delete"] = Field("quarantine", description="weights of versions trained on data since erased (deletion/superseded.py)")
    seed: int = 0

    @field_validator("methods", mode="before")
    @classmethod
    def _ladders(cls, value):
        if not isinstance(value, dict):
            return value
        out = {}
        for kind, goals in value.items():
            if not isinstance(goals, dict):
                raise ValueError(f"methods.{kind} must map goals to a method or a list of rungs")
            out[kind] = {goal: _as_ladder(spec, f"{kind}.{goal}") for goal, spec in goals.items()}
        return out

    def ladder_for(self, kind: str, goal: str, override: str | None = None, calibration: dict | None = None) -> tuple[list[Rung], str]:
        """The rungs for (kind, goal) and where they came from: override, params, calibration, shipped."""
        if override:
            rungs, source = [Rung(method=override)], "--method"
        elif goal in self.methods.get(kind, {}):
            rungs, source = self.methods[kind][goal], "params.yaml"
        elif self.use_calibration and calibration and goal in (calibration.get("ladders") or {}).get(kind, {}):
            # The calibrated rungs first, then the shipped ones it did not pick, as fallbacks: a
            # calibration on a few proxy requests must not leave a real request fewer options.
            rungs = _as_ladder(calibration["ladders"][kind][goal])
            chosen = {(r.method, tuple(sorted(r.config.items()))) for r in rungs}
            rungs += [r for r in _as_ladder(SHIPPED_LADDERS.get(kind, {}).get(goal, [])) if (r.method, tuple(sorted(r.config.items()))) not in chosen]
            source = f"calibration {calibration.get('calibration_id', '')}".strip()
        elif goal in SHIPPED_LADDERS.get(kind, {}):
            rungs, source = _as_ladder(SHIPPED_LADDERS[kind][goal]), "shipped default"
        else:
            raise ConfigError(f"no unlearning method configured for {kind} requests with goal {goal}", "add a ladder under unlearning.methods in params.yaml")
        # unlearning.configs.<method> sits under each rung's own config
        return [Rung(method=r.method, config={**self.configs.get(r.method, {}), **r.config}, time_budget_s=r.time_budget_s) for r in rungs], source

    def method_for(self, kind: str, goal: str, override: str | None = None) -> str:
        """The first rung's method (kept for callers that run one method)."""
        return self.ladder_for(kind, goal, override)[0][0].method


def unlearning_policy(params) -> UnlearningPolicy:
    from forgetflow.params import params_section

    return params_section(params, "unlearning", UnlearningPolicy)


def calibration_path(settings) -> Path:
    return settings.state_dir / "calibration.json"


def load_calibration(settings) -> dict | None:
    """The workspace's calibration, or None. A damaged file is an error, not a silent fallback."""
    path = calibration_path(settings)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        for kind, goals in (data.get("ladders") or {}).items():
            for goal, rungs in goals.items():
                _as_ladder(rungs)
    except (json.JSONDecodeError, ValueError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{path} is not a valid calibration ({exc})", "run `forgetflow calibrate` again, or delete the file to use the shipped ladders") from exc
    return data
