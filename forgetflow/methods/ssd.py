"""Selective Synaptic Dampening (Foster et al., AAAI 2024, arXiv 2308.07707) and its label-free variant.

Retraining-free. Importance is the diagonal Fisher: the mean over batches of the squared gradient
of the batch-mean cross-entropy, computed on the forget set (I_f) and on the training data D =
retain + forget (I_D). Weights with I_f > alpha * I_D are *selected* and multiplied by
beta = min(lambda * I_D / I_f, 1); every other weight is left bit-identical.

Paper defaults: alpha ("selection weighting") 10, lambda ("dampening constant") 1.
Importances are computed in eval mode (dropout off, BatchNorm on its running statistics), so they
describe the deployed function; BatchNorm buffers are never changed. The batch size is explicit
(default 64) because a batch-mean Fisher depends on it (peers.md §3.3).

`lfssd` (Foster et al., "Loss-Free Machine Unlearning", ICLR 2024 Tiny Papers): the same selection
and dampening, but importance is the mean absolute gradient of the squared l2 norm of the output
logits, so no labels are needed on either set.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from forgetflow.data.store import LoadedSplit
from forgetflow.methods import _peer_utils as pu
from forgetflow.methods.base import MethodInfo, Timer, UnlearnResult, register

DEFAULTS = {"alpha": 10.0, "dampening": 1.0, "batch_size": 64}
SEARCH_SPACE = {
    "alpha": [1.0, 3.0, 10.0, 30.0, 50.0],
    "dampening": [0.1, 0.5, 1.0, 5.0],
}


def importance(model: nn.Module, data: pu.Tensors, batch_size: int, device: str, label_free: bool, generator: torch.Generator | None = None, progress: bool = False, desc: str = "importance") -> list[torch.Tensor]:
    """Per-parameter importance: mean over batches of grad^2 of the CE loss (SSD) or |grad| of ||f(x)||^2 (LFSSD)."""
    from tqdm.auto import tqdm

    params = list(model.parameters())
    totals = [torch.zeros_like(p) for p in params]
    was_training = model.training
    model.eval()
    batches = list(data.batches(batch_size, generator))
    for index in tqdm(batches, desc=desc, disable=not progress, leave=False, unit="batch"):
        logits = pu.logits_of(model, data.x[index], device)
        loss = logits.pow(2).sum(1).mean() if label_free else F.cross_entropy(logits, data.y[index])
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        for total, g in zip(totals, grads):
            if g is not None:
                total.add_(g.abs() if label_free else g.pow(2))
    model.train(was_training)
    return [t / max(len(batches), 1) for t in totals]


@torch.no_grad()
def dampen(params: list[nn.Parameter], forget_importance: list[torch.Tensor], data_importance: list[torch.Tensor], alpha: float, dampening: float) -> list[torch.Tensor]:
    """Multiply the selected weights by min(lambda * I_D / I_f, 1) in place; returns the selection masks."""
    selections = []
    for p, i_f, i_d in zip(params, forget_importance, data_importance):
        selected = i_f > alpha * i_d
        beta = torch.clamp(dampening * i_d / torch.where(selected, i_f, torch.ones_like(i_f)), max=1.0)
        p.copy_(torch.where(selected, p * beta, p))
        selections.append(selected)
    return selections


def _run(info: MethodInfo, label_free: bool, model, forget, retain, config, seed, device, time_budget_s, progress, kind, goal) -> UnlearnResult:
    timer = Timer(time_budget_s)
    cfg = pu.resolve_config(info.name, DEFAULTS, config)
    pu.check_request(info, kind, goal)
    pu.require_positive(info.name, cfg, ("alpha", "dampening", "batch_size"))
    pu.require_split(forget, "forget", info.name)
    pu.require_split(retain, "retain", info.name)
    generator = pu.start(seed)
    student = pu.working_copy(model, device)
    forget_t = pu.Tensors(forget, device)
    # D is the whole training set the model saw: retain plus forget
    data_t = pu.Tensors(pu.concat(retain, forget), device)
    i_d = importance(student, data_t, cfg["batch_size"], device, label_free, generator, progress, "importance on D")
    i_f = importance(student, forget_t, cfg["batch_size"], device, label_free, generator, progress, "importance on forget")
    selections = dampen(list(student.parameters()), i_f, i_d, cfg["alpha"], cfg["dampening"])
    selected = int(sum(int(s.sum()) for s in selections))
    total = int(sum(s.numel() for s in selections))
    log = [{"selected_weights": selected, "total_weights": total}]
    return pu.finish(student, timer, cfg, log, "dampened once", {"selected_weights": selected, "selected_fraction": selected / max(total, 1)})


def unlearn(model: nn.Module, forget: LoadedSplit, *, retain: LoadedSplit | None = None, val: LoadedSplit | None = None, stats=None, config: dict | None = None, seed: int = 0, device: str = "cpu", time_budget_s: float | None = None, progress: bool = True, kind: str | None = None, goal: str | None = None) -> UnlearnResult:
    return _run(INFO, False, model, forget, retain, config, seed, device, time_budget_s, progress, kind, goal)


def unlearn_label_free(model: nn.Module, forget: LoadedSplit, *, retain: LoadedSplit | None = None, val: LoadedSplit | None = None, stats=None, config: dict | None = None, seed: int = 0, device: str = "cpu", time_budget_s: float | None = None, progress: bool = True, kind: str | None = None, goal: str | None = None) -> UnlearnResult:
    return _run(INFO_LABEL_FREE, True, model, forget, retain, config, seed, device, time_budget_s, progress, kind, goal)


_KINDS = ("samples", "subjects", "classes")
_PAPER = "Foster et al., Fast Machine Unlearning Without Retraining Through Selective Synaptic Dampening, AAAI 2024 (arXiv 2308.07707)"

INFO = register(
    MethodInfo(
        name="ssd",
        summary="Retraining-free: dampen weights far more important (diagonal Fisher) to the forget set than to the training data.",
        paper=_PAPER,
        kinds=_KINDS,
        goals=("forget",),
        needs=("forget", "retain"),
        defaults=dict(DEFAULTS),
        search_space=SEARCH_SPACE,
        fn=unlearn,
    )
)

INFO_LABEL_FREE = register(
    MethodInfo(
        name="lfssd",
        summary="Label-free SSD: importance from |grad| of the squared output norm, no labels needed.",
        paper="Foster et al., Loss-Free Machine Unlearning, ICLR 2024 Tiny Papers; builds on " + _PAPER,
        kinds=_KINDS,
        goals=("forget",),
        needs=("forget", "retain"),
        defaults=dict(DEFAULTS),
        search_space=SEARCH_SPACE,
        fn=unlearn_label_free,
    )
)
