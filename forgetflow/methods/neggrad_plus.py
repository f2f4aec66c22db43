"""NegGrad+: descend on the retained data while ascending on the forget set (Kurmanji et al. 2023).

Loss per step = beta * CE(retain batch) - (1 - beta) * CE(forget batch); one epoch is a pass over
the retain data with the forget batches cycled alongside. Our reference notes give no verified
paper value for beta, so the default 0.99 is ours (searched over {0.9, 0.95, 0.99, 0.999});
SGD lr 0.01, momentum 0.9, weight decay 5e-4, 5 epochs, batch 64 for both streams.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from forgetflow.methods._loops import batch_tensors, budget_spent, cycle, finish, index_batches, run_epochs, sgd
from forgetflow.methods.base import MethodInfo, Timer, register
from forgetflow.training import autocast

DEFAULTS = {"lr": 0.01, "epochs": 5, "batch_size": 64, "forget_batch_size": 64, "beta": 0.99, "momentum": 0.9, "weight_decay": 5e-4}
SEARCH_SPACE = {"lr": [1e-3, 1e-2, 5e-2], "epochs": [3, 5, 10], "beta": [0.9, 0.95, 0.99, 0.999]}


def neggrad_plus(model, forget, *, retain, config, seed, device, time_budget_s=None, progress=True, **_):
    timer = Timer(time_budget_s)
    generator = torch.Generator().manual_seed(seed)
    optimizer = sgd(model, config)
    beta = config["beta"]

    def epoch(_):
        model.train()
        forget_batches = cycle(index_batches(len(forget.labels), config["forget_batch_size"], generator))
        totals = {"retain_loss": 0.0, "forget_loss": 0.0}
        steps = 0
        for index in index_batches(len(retain.labels), config["batch_size"], generator):
            if budget_spent(timer):
                break
            xr, yr = batch_tensors(retain, index, device)
            xf, yf = batch_tensors(forget, next(forget_batches), device)
            with autocast(device):
                loss_r = F.cross_entropy(model(xr).float(), yr)
                loss_f = F.cross_entropy(model(xf).float(), yf)
            optimizer.zero_grad(set_to_none=True)
            (beta * loss_r - (1 - beta) * loss_f).backward()
            optimizer.step()
            totals["retain_loss"] += float(loss_r.detach())
            totals["forget_loss"] += float(loss_f.detach())
            steps += 1
        return {k: v / max(steps, 1) for k, v in totals.items()}

    log, stopped = run_epochs(model, epochs=config["epochs"], epoch_fn=epoch, timer=timer, desc="NegGrad+", progress=progress)
    return finish(model, timer, config, log, stopped)


INFO = register(
    MethodInfo(
        name="neggrad_plus",
        summary="Retain descent plus forget ascent (NegGrad+)",
        paper="Kurmanji et al., Towards Unbounded Machine Unlearning (NeurIPS 2023)",
        kinds=("samples", "subjects", "classes"),
        goals=("forget",),
        needs=("forget", "retain"),
        defaults=DEFAULTS,
        search_space=SEARCH_SPACE,
        fn=neggrad_plus,
    )
)
