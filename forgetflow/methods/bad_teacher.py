"""Bad Teacher (Chundawat et al., "Can Bad Teaching Induce Forgetting?", AAAI 2023, arXiv 2205.08096).

The student starts as the original model. A mixed, shuffled stream of retain and forget samples is
distilled: on retain samples the target is the competent teacher (the original model), on forget
samples the incompetent teacher (same architecture, randomly initialised, seeded). Loss =
KL(target_T || student_T), averaged over the batch.

Defaults are the authors' notebook run, the setting behind their published numbers: Adam, lr 1e-4,
1 epoch, T 1, batch 256, a 30 % random subset of the retain set.

Deviation: the reference code uses `F.kl_div`'s default element-mean reduction (a documented
PyTorch pitfall that divides by the number of classes); here the KL is averaged per sample
("batchmean"), the true KL. With Adam the constant factor barely changes the updates.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from forgetflow.data.store import LoadedSplit
from forgetflow.methods import _peer_utils as pu
from forgetflow.methods.base import MethodInfo, Timer, UnlearnResult, register

DEFAULTS = {"lr": 1e-4, "epochs": 1, "temperature": 1.0, "batch_size": 256, "retain_fraction": 0.3}
SEARCH_SPACE = {
    "lr": [1e-5, 1e-4, 1e-3],
    "epochs": [1, 2, 5],
    "temperature": [1.0, 2.0, 4.0],
    "retain_fraction": [0.1, 0.3, 1.0],
}


def unlearn(model: nn.Module, forget: LoadedSplit, *, retain: LoadedSplit | None = None, val: LoadedSplit | None = None, stats=None, config: dict | None = None, seed: int = 0, device: str = "cpu", time_budget_s: float | None = None, progress: bool = True, kind: str | None = None, goal: str | None = None) -> UnlearnResult:
    timer = Timer(time_budget_s)
    cfg = pu.resolve_config(INFO.name, DEFAULTS, config)
    pu.check_request(INFO, kind, goal)
    pu.require_positive(INFO.name, cfg, ("lr", "epochs", "temperature", "batch_size", "retain_fraction"))
    pu.require_split(forget, "forget", INFO.name)
    pu.require_split(retain, "retain", INFO.name)
    generator = pu.start(seed)
    retain_part = pu.subsample(retain, min(cfg["retain_fraction"], 1.0), generator)
    mixed = pu.Tensors(pu.concat(retain_part, forget), device)
    is_forget = torch.zeros(len(mixed), dtype=torch.bool, device=mixed.y.device)
    is_forget[len(retain_part.labels) :] = True

    competent = pu.frozen_copy(model, device)
    incompetent = pu.random_init_copy(model, device, seed)
    student = pu.working_copy(model, device)
    optimizer = pu.make_optimizer(student.parameters(), "adam", cfg["lr"])
    t = cfg["temperature"]

    def batch_losses(epoch: int):
        for index in mixed.batches(cfg["batch_size"], generator):
            x = mixed.x[index]
            with torch.no_grad():
                good = F.softmax(pu.logits_of(competent, x, device) / t, dim=1)
                bad = F.softmax(pu.logits_of(incompetent, x, device) / t, dim=1)
                target = torch.where(is_forget[index].unsqueeze(1), bad, good)
            log_p = F.log_softmax(pu.logits_of(student, x, device) / t, dim=1)
            yield F.kl_div(log_p, target, reduction="batchmean")

    log, stopped = pu.optimizer_epochs(student, optimizer, cfg["epochs"], "bad teacher", progress, timer, batch_losses, loss_key="kd_loss")
    return pu.finish(student, timer, cfg, log, stopped, {"retain_used": len(retain_part.labels)})


INFO = register(
    MethodInfo(
        name="bad_teacher",
        summary="Distil from the original model on retain and from a randomly initialised teacher on forget.",
        paper="Chundawat et al., Can Bad Teaching Induce Forgetting? Unlearning in Deep Networks Using an Incompetent Teacher, AAAI 2023 (arXiv 2205.08096)",
        kinds=("samples", "subjects", "classes"),
        goals=("forget",),
        needs=("forget", "retain"),
        defaults=dict(DEFAULTS),
        search_space=SEARCH_SPACE,
        fn=unlearn,
    )
)
