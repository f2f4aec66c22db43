"""l1-sparse unlearning (Jia et al., "Model Sparsity Can Simplify Machine Unlearning", NeurIPS 2023).

Fine-tunes on the retain set with CE + alpha_t * ||theta||_1 (the l1 norm over all parameters).
alpha_t decays linearly from `alpha` at the first epoch to zero: alpha_t = alpha * (1 - t / E_l1)
with E_l1 = epochs - no_l1_epochs, and the last `no_l1_epochs` epochs run without the penalty.

Defaults (the l1-sparse README and `arg_parser.py`): SGD, lr 0.01, momentum 0.9, weight decay 5e-4,
10 epochs, batch 256. The README leaves alpha to the user (`--alpha ${alpha}`); 1e-4 is the value
independent re-runs of the official code use, and the search space spans 1e-5 to 1e-3.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from forgetflow.data.store import LoadedSplit
from forgetflow.methods import _peer_utils as pu
from forgetflow.methods.base import MethodInfo, Timer, UnlearnResult, register

DEFAULTS = {"alpha": 1e-4, "no_l1_epochs": 0, "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4, "epochs": 10, "batch_size": 256}
SEARCH_SPACE = {
    "alpha": [1e-5, 5e-5, 1e-4, 5e-4, 1e-3],
    "lr": [1e-3, 3e-3, 0.01, 0.03],
    "epochs": [3, 5, 10],
}


def l1_weight(alpha: float, epoch: int, epochs: int, no_l1_epochs: int) -> float:
    """The penalty weight for a 0-based epoch: linear decay to zero, then zero."""
    l1_epochs = epochs - no_l1_epochs
    if epoch >= l1_epochs:
        return 0.0
    return alpha * (1.0 - epoch / l1_epochs)


def l1_norm(model: nn.Module) -> torch.Tensor:
    return sum(p.abs().sum() for p in model.parameters())


def unlearn(model: nn.Module, forget: LoadedSplit, *, retain: LoadedSplit | None = None, val: LoadedSplit | None = None, stats=None, config: dict | None = None, seed: int = 0, device: str = "cpu", time_budget_s: float | None = None, progress: bool = True, kind: str | None = None, goal: str | None = None) -> UnlearnResult:
    timer = Timer(time_budget_s)
    cfg = pu.resolve_config(INFO.name, DEFAULTS, config)
    pu.check_request(INFO, kind, goal)
    pu.require_positive(INFO.name, cfg, ("lr", "epochs", "batch_size"))
    if not 0 <= cfg["no_l1_epochs"] < cfg["epochs"] or cfg["alpha"] < 0:
        raise pu.ConfigError("l1_sparse: need alpha >= 0 and 0 <= no_l1_epochs < epochs", f"got alpha={cfg['alpha']}, no_l1_epochs={cfg['no_l1_epochs']}, epochs={cfg['epochs']}")
    # forget is not trained on, but an empty request is a caller error worth catching
    pu.require_split(forget, "forget", INFO.name)
    retain_t = pu.Tensors(pu.require_split(retain, "retain", INFO.name), device)
    generator = pu.start(seed)
    student = pu.working_copy(model, device)
    optimizer = pu.make_optimizer(student.parameters(), "sgd", cfg["lr"], cfg["momentum"], cfg["weight_decay"])

    def weight(epoch: int) -> float:
        return l1_weight(cfg["alpha"], epoch, cfg["epochs"], cfg["no_l1_epochs"])

    def batch_losses(epoch: int):
        current = weight(epoch)
        for index in retain_t.batches(cfg["batch_size"], generator):
            loss = F.cross_entropy(pu.logits_of(student, retain_t.x[index], device), retain_t.y[index])
            yield loss + current * l1_norm(student) if current > 0 else loss

    log, stopped = pu.optimizer_epochs(student, optimizer, cfg["epochs"], "l1-sparse", progress, timer, batch_losses, epoch_fields=lambda epoch: {"l1_weight": weight(epoch)})
    return pu.finish(student, timer, cfg, log, stopped)


INFO = register(
    MethodInfo(
        name="l1_sparse",
        summary="Fine-tune on retain with an l1 penalty that decays linearly to zero (sparsity-aware unlearning).",
        paper="Jia et al., Model Sparsity Can Simplify Machine Unlearning, NeurIPS 2023 (arXiv 2304.04934)",
        kinds=("samples", "subjects", "classes"),
        goals=("forget",),
        needs=("forget", "retain"),
        defaults=dict(DEFAULTS),
        search_space=SEARCH_SPACE,
        fn=unlearn,
    )
)
