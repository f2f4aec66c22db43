"""SCRUB: teacher-student unlearning (Kurmanji et al., "Towards Unbounded Machine Unlearning", NeurIPS 2023).

The teacher is the original model (frozen, eval mode); the student starts as a copy. Each epoch,
while epoch < `msteps`, one *max-step* pass over the forget set with loss -KL_T(teacher || student)
pushes the student away from the teacher there; then one *min-step* pass over the retain set with
loss gamma * CE + alpha * KL_T keeps it close to the teacher and accurate elsewhere. KL is the
distillation KL at temperature T, scaled by T^2 and averaged over the batch.

Two presets, the notebooks' settings (peers.md §1.3), each registered as its own method because the
registry hands a method one flat, fully-resolved config (a "preset" key could not be told apart
from explicit overrides):
- `scrub` (small scale): Adam, lr 5e-4, weight decay 0.1, 10 epochs, msteps 3, T 2, alpha 0.5,
  gamma 1, retain batch 32, forget batch 64.
- `scrub_large` (large scale): SGD, lr 5e-4, momentum 0.9, weight decay 5e-4, 3 epochs, msteps 2,
  T 4, alpha 0.001, gamma 0.99, retain batch 128, forget batch 32.

Deviations: the notebooks' learning-rate decay milestones and the unused "other KD" term (beta) are
left out; the notebooks' label-smoothing setting is not used by the reference loop either, so it is
not applied here. The teacher is a frozen deep copy: the caller's model is never modified.

`scrub_rewind` is the paper's SCRUB+R, its variant for privacy (removing a random or per-person
subset, where forgetting too much is itself a membership signal): SCRUB runs with a checkpoint kept
after every epoch (and the starting model); a reference point for the forget error is taken from
held-out data of the forget set's distribution, and the run is rewound to the checkpoint whose
forget error is closest to it. Here the held-out data is the validation split (never the test
split), class by class, weighted by the forget set's class mix; the small-scale settings above
apply. The chosen epoch and both errors are in the result's `extra` and `stopped_because`.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from forgetflow.data.store import LoadedSplit
from forgetflow.methods import _peer_utils as pu
from forgetflow.methods.base import MethodInfo, Timer, UnlearnResult, register

PRESETS = {
    "small": {"optimizer": "adam", "lr": 5e-4, "momentum": 0.9, "weight_decay": 0.1, "epochs": 10, "msteps": 3, "temperature": 2.0, "alpha": 0.5, "gamma": 1.0, "retain_batch_size": 32, "forget_batch_size": 64},
    "large": {"optimizer": "sgd", "lr": 5e-4, "momentum": 0.9, "weight_decay": 5e-4, "epochs": 3, "msteps": 2, "temperature": 4.0, "alpha": 0.001, "gamma": 0.99, "retain_batch_size": 128, "forget_batch_size": 32},
}
DEFAULTS = PRESETS["small"]

SEARCH_SPACE = {
    "lr": [1e-4, 5e-4, 1e-3, 5e-3],
    "msteps": [1, 2, 3, 5],
    "epochs": [3, 5, 10],
}


def _run(info: MethodInfo, model: nn.Module, forget: LoadedSplit, retain: LoadedSplit | None, config: dict | None, seed: int, device: str, time_budget_s: float | None, progress: bool, kind: str | None, goal: str | None, val: LoadedSplit | None = None) -> UnlearnResult:
    timer = Timer(time_budget_s)
    cfg = pu.resolve_config(info.name, info.defaults, config)
    pu.check_request(info, kind, goal)
    pu.require_positive(info.name, cfg, ("lr", "epochs", "temperature", "retain_batch_size", "forget_batch_size"))
    if cfg["msteps"] < 0:
        raise pu.ConfigError(f"scrub: msteps must be >= 0, got {cfg['msteps']}", "msteps counts the epochs with a max-step")
    forget_t = pu.Tensors(pu.require_split(forget, "forget", info.name), device)
    retain_t = pu.Tensors(pu.require_split(retain, "retain", info.name), device)
    generator = pu.start(seed)
    teacher = pu.frozen_copy(model, device)
    student = pu.working_copy(model, device)
    optimizer = pu.make_optimizer(student.parameters(), cfg["optimizer"], cfg["lr"], cfg["momentum"], cfg["weight_decay"])
    temperature = cfg["temperature"]

    def step(loss) -> float:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    rewind = info.name == "scrub_rewind"
    if rewind:
        target = _heldout_error(student, val, forget, device, info.name)
        checkpoints = [(0, _error(student, forget_t.x, forget_t.y, device), _state(student))]
    log, stopped = [], "epochs done"
    for epoch in pu.epochs_bar(cfg["epochs"], info.name, progress):
        student.train()
        row = {"epoch": epoch + 1}
        if epoch < cfg["msteps"]:
            max_losses = []
            for index in forget_t.batches(cfg["forget_batch_size"], generator):
                x = forget_t.x[index]
                max_losses.append(step(-pu.kd_kl(pu.logits_of(student, x, device), pu.logits_of(teacher, x, device), temperature)))
            row["forget_kl"] = -sum(max_losses) / len(max_losses)
        min_losses = []
        for index in retain_t.batches(cfg["retain_batch_size"], generator):
            x, y = retain_t.x[index], retain_t.y[index]
            logits = pu.logits_of(student, x, device)
            loss = cfg["gamma"] * F.cross_entropy(logits, y) + cfg["alpha"] * pu.kd_kl(logits, pu.logits_of(teacher, x, device), temperature)
            min_losses.append(step(loss))
            if timer.over_budget():
                break
        row["retain_loss"] = sum(min_losses) / max(len(min_losses), 1)
        if rewind:
            row["forget_error"] = _error(student, forget_t.x, forget_t.y, device)
            checkpoints.append((epoch + 1, row["forget_error"], _state(student)))
        log.append(row)
        if timer.over_budget():
            stopped = "time budget"
            break
    if not rewind:
        return pu.finish(student, timer, cfg, log, stopped)
    epoch, error, state = min(checkpoints, key=lambda c: (abs(c[1] - target), -c[0]))
    student.load_state_dict(state)
    stopped = f"{stopped}; rewound to epoch {epoch} (forget error {error:.1f}% vs held-out reference point {target:.1f}%)"
    return pu.finish(student, timer, cfg, log, stopped, extra={"rewind_epoch": epoch, "forget_error": error, "reference_error": target})


def _state(model: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _error(model: nn.Module, x, y, device: str) -> float:
    """Top-1 error in percent, eval mode."""
    import torch

    model.eval()
    with torch.no_grad():
        wrong = sum(int((pu.logits_of(model, x[i : i + 512], device).argmax(1) != y[i : i + 512]).sum()) for i in range(0, len(y), 512))
    return 100.0 * wrong / max(len(y), 1)


def _heldout_error(model: nn.Module, val: LoadedSplit | None, forget: LoadedSplit, device: str, name: str) -> float:
    """The original's validation error per class, weighted by the forget set's class mix: what a model
    that never saw the forget set is expected to get wrong on it (SCRUB+R's reference point)."""
    import numpy as np

    val_t = pu.Tensors(pu.require_split(val, "val", name), device)
    labels, counts = np.unique(forget.labels, return_counts=True)
    error, weight = 0.0, 0
    for label, count in zip(labels.tolist(), counts.tolist()):
        index = (val_t.y == label).nonzero().flatten()
        if len(index) == 0:
            continue  # no held-out sample of this class: it cannot inform the reference point
        error += count * _error(model, val_t.x[index], val_t.y[index], device)
        weight += count
    if weight == 0:
        raise pu.MissingInputError(f"{name}: the validation split has no sample of the forget set's classes", "SCRUB+R needs held-out data of the forget set's distribution; use scrub")
    return error / weight


def unlearn(model: nn.Module, forget: LoadedSplit, *, retain: LoadedSplit | None = None, val: LoadedSplit | None = None, stats=None, config: dict | None = None, seed: int = 0, device: str = "cpu", time_budget_s: float | None = None, progress: bool = True, kind: str | None = None, goal: str | None = None) -> UnlearnResult:
    return _run(INFO, model, forget, retain, config, seed, device, time_budget_s, progress, kind, goal)


def unlearn_large(model: nn.Module, forget: LoadedSplit, *, retain: LoadedSplit | None = None, val: LoadedSplit | None = None, stats=None, config: dict | None = None, seed: int = 0, device: str = "cpu", time_budget_s: float | None = None, progress: bool = True, kind: str | None = None, goal: str | None = None) -> UnlearnResult:
    return _run(INFO_LARGE, model, forget, retain, config, seed, device, time_budget_s, progress, kind, goal)


def unlearn_rewind(model: nn.Module, forget: LoadedSplit, *, retain: LoadedSplit | None = None, val: LoadedSplit | None = None, stats=None, config: dict | None = None, seed: int = 0, device: str = "cpu", time_budget_s: float | None = None, progress: bool = True, kind: str | None = None, goal: str | None = None) -> UnlearnResult:
    return _run(INFO_REWIND, model, forget, retain, config, seed, device, time_budget_s, progress, kind, goal, val=val)


_PAPER = "Kurmanji et al., Towards Unbounded Machine Unlearning, NeurIPS 2023 (arXiv 2302.09880)"

def _register(name: str, summary: str, preset: str, fn, needs: tuple[str, ...] = ("forget", "retain")) -> MethodInfo:
    return register(MethodInfo(name=name, summary=summary, paper=_PAPER, kinds=("samples", "subjects", "classes"), goals=("forget",), needs=needs, defaults=dict(PRESETS[preset]), search_space=SEARCH_SPACE, fn=fn))


INFO = _register("scrub", "Teacher-student unlearning: max-steps away from the original on forget, min-steps (CE + KL) on retain (small-scale settings).", "small", unlearn)
INFO_LARGE = _register("scrub_large", "SCRUB with the paper's large-scale settings (SGD, 3 epochs, msteps 2, T 4, alpha 0.001).", "large", unlearn_large)
INFO_REWIND = _register(
    "scrub_rewind",
    "SCRUB+R: SCRUB (small-scale settings) rewound to the epoch whose forget error is closest to the held-out (validation) error, so the forget set ends up looking unseen, not over-forgotten.",
    "small", unlearn_rewind, needs=("forget", "retain", "val"),
)
