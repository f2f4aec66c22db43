"""SalUn: saliency-based unlearning (Fan et al., ICLR 2024, arXiv 2310.12508).

1. Saliency mask: one pass over the forget set in eval mode; the gradient of the *negated*
   cross-entropy is summed over batches and its absolute value ranked globally over all weights.
   The top `mask_fraction` (paper README: 0.5) are trainable; the rest are frozen.
2. Random-label unlearning restricted to the mask: each epoch makes one pass over the forget set
   with uniformly random labels (drawn once per run, as the paper's CIFAR-10 path does) and then
   one pass over the retain set with the true labels.

Paper defaults (README, ResNet-18 / CIFAR-10, 10 %): SGD, lr 0.013, momentum 0.9, weight decay
5e-4, 10 epochs, batch 256, mask 0.5.

Deviation from the published code (on purpose, peers.md §4.4, SalUn issue #32 / PR #33): masking the
gradient does not freeze a weight, because weight decay and momentum still move it. Here the mask is
a hard constraint: frozen coordinates are restored to their original values after every optimiser
step and their momentum is zeroed. Only parameters are frozen; BatchNorm running statistics are
buffers and follow the training passes, as in the paper.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from forgetflow.data.store import LoadedSplit
from forgetflow.methods import _peer_utils as pu
from forgetflow.methods.base import MethodInfo, Timer, UnlearnResult, register

DEFAULTS = {
    "mask_fraction": 0.5,
    "lr": 0.013,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "epochs": 10,
    "batch_size": 256,
    "mask_batch_size": 256,
}

SEARCH_SPACE = {
    "lr": [1e-3, 3e-3, 0.013, 0.03, 0.1],
    "mask_fraction": [0.1, 0.3, 0.5, 0.7],
    "epochs": [3, 5, 10],
}


def saliency_mask(model: nn.Module, forget: pu.Tensors, fraction: float, batch_size: int, device: str) -> list[torch.Tensor]:
    """Boolean masks (True = trainable), one per parameter: top `fraction` of |grad of -CE| on the forget set."""
    params = list(model.parameters())
    was_training = model.training
    model.eval()
    model.zero_grad(set_to_none=True)
    for index in forget.batches(batch_size):
        loss = -F.cross_entropy(pu.logits_of(model, forget.x[index], device), forget.y[index])
        loss.backward()  # gradients accumulate: the sum over batches
    scores = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).detach().abs().flatten() for p in params])
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    keep = int(round(fraction * scores.numel()))
    flat = torch.zeros(scores.numel(), dtype=torch.bool, device=scores.device)
    if keep > 0:
        # stable descending sort: ties broken by position, so the mask is deterministic
        flat[torch.argsort(scores.cpu(), descending=True, stable=True)[:keep].to(scores.device)] = True
    masks, offset = [], 0
    for p in params:
        masks.append(flat[offset : offset + p.numel()].view_as(p))
        offset += p.numel()
    return masks


class HardMask:
    """Keeps masked-out parameter coordinates bit-identical to their starting values.

    `mask_gradients()` after backward keeps the frozen coordinates out of the update direction;
    `enforce(optimizer)` after each step undoes whatever weight decay or momentum did to them and
    zeroes their optimiser state, so nothing accumulates for the next step.
    """

    STATE_KEYS = ("momentum_buffer", "exp_avg", "exp_avg_sq", "max_exp_avg_sq")

    def __init__(self, params: list[nn.Parameter], masks: list[torch.Tensor]):
        self.params, self.masks = params, masks
        self.anchors = [p.detach().clone() for p in params]

    @torch.no_grad()
    def mask_gradients(self) -> None:
        for p, m in zip(self.params, self.masks):
            if p.grad is not None:
                p.grad.mul_(m)

    @torch.no_grad()
    def enforce(self, optimizer: torch.optim.Optimizer) -> None:
        for p, m, anchor in zip(self.params, self.masks, self.anchors):
            p.copy_(torch.where(m, p, anchor))
            state = optimizer.state.get(p, {})
            for key in self.STATE_KEYS:
                buf = state.get(key)
                if isinstance(buf, torch.Tensor) and buf.shape == m.shape:
                    buf.masked_fill_(~m, 0)


def unlearn(model: nn.Module, forget: LoadedSplit, *, retain: LoadedSplit | None = None, val: LoadedSplit | None = None, stats=None, config: dict | None = None, seed: int = 0, device: str = "cpu", time_budget_s: float | None = None, progress: bool = True, kind: str | None = None, goal: str | None = None) -> UnlearnResult:
    timer = Timer(time_budget_s)
    cfg = pu.resolve_config(INFO.name, DEFAULTS, config)
    pu.check_request(INFO, kind, goal)
    pu.require_positive(INFO.name, cfg, ("lr", "epochs", "batch_size", "mask_batch_size"))
    if not 0.0 < cfg["mask_fraction"] <= 1.0:
        raise pu.ConfigError(f"salun: mask_fraction must be in (0, 1], got {cfg['mask_fraction']}", "0.5 is the paper's choice")
    forget_t = pu.Tensors(pu.require_split(forget, "forget", INFO.name), device)
    retain_t = pu.Tensors(pu.require_split(retain, "retain", INFO.name), device)
    generator = pu.start(seed)
    student = pu.working_copy(model, device)
    with torch.no_grad():
        num_classes = int(pu.logits_of(student.eval(), forget_t.x[:1], device).shape[1])

    masks = saliency_mask(student, forget_t, cfg["mask_fraction"], cfg["mask_batch_size"], device)
    params = list(student.parameters())
    constraint = HardMask(params, masks)
    optimizer = pu.make_optimizer(params, "sgd", cfg["lr"], cfg["momentum"], cfg["weight_decay"])
    random_labels = torch.randint(0, num_classes, (len(forget_t),), generator=generator).to(forget_t.y.device)

    def step(x: torch.Tensor, y: torch.Tensor) -> float:
        loss = F.cross_entropy(pu.logits_of(student, x, device), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        constraint.mask_gradients()
        optimizer.step()
        constraint.enforce(optimizer)
        return float(loss.detach())

    log, stopped = [], "epochs done"
    mask_seconds = timer.elapsed
    for epoch in pu.epochs_bar(cfg["epochs"], "salun", progress):
        student.train()
        forget_loss = [step(forget_t.x[i], random_labels[i]) for i in forget_t.batches(cfg["batch_size"], generator)]
        retain_loss = []
        for index in retain_t.batches(cfg["batch_size"], generator):
            retain_loss.append(step(retain_t.x[index], retain_t.y[index]))
            if timer.over_budget():
                break
        log.append({"epoch": epoch + 1, "forget_loss": sum(forget_loss) / len(forget_loss), "retain_loss": sum(retain_loss) / max(len(retain_loss), 1)})
        if timer.over_budget():
            stopped = "time budget"
            break
    trainable = int(sum(int(m.sum()) for m in masks))
    total = int(sum(m.numel() for m in masks))
    extra = {"mask_seconds": mask_seconds, "trainable_weights": trainable, "total_weights": total}
    return pu.finish(student, timer, cfg, log, stopped, extra)


INFO = register(
    MethodInfo(
        name="salun",
        summary="Saliency-masked random-label unlearning; the mask is a hard constraint (frozen weights stay bit-identical).",
        paper="Fan et al., SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency, ICLR 2024 (arXiv 2310.12508)",
        kinds=("samples", "subjects", "classes"),
        goals=("forget",),
        needs=("forget", "retain"),
        defaults=dict(DEFAULTS),
        search_space=SEARCH_SPACE,
        fn=unlearn,
    )
)
