"""FT: fine-tune the model on the retained data only (catastrophic forgetting of the rest).

Defaults follow the OPTML (l1-sparse / SalUn) README command: SGD lr 0.01, momentum 0.9, weight
decay 5e-4, 10 epochs, batch 256. Serves every request kind with goal `forget`; needs `retain`.
"""

from __future__ import annotations

import torch

from forgetflow.methods._loops import finish, run_epochs, sgd, supervised_pass
from forgetflow.methods.base import MethodInfo, Timer, register

DEFAULTS = {"lr": 0.01, "epochs": 10, "batch_size": 256, "momentum": 0.9, "weight_decay": 5e-4}
SEARCH_SPACE = {"lr": [1e-4, 1e-3, 1e-2, 1e-1], "epochs": [5, 10]}


def finetune(model, forget, *, retain, config, seed, device, time_budget_s=None, progress=True, **_):
    timer = Timer(time_budget_s)
    generator = torch.Generator().manual_seed(seed)
    optimizer = sgd(model, config)

    def epoch(_):
        return {"retain_loss": supervised_pass(model, optimizer, retain, batch_size=config["batch_size"], device=device, generator=generator, timer=timer)}

    log, stopped = run_epochs(model, epochs=config["epochs"], epoch_fn=epoch, timer=timer, desc="FT", progress=progress)
    return finish(model, timer, config, log, stopped)


INFO = register(
    MethodInfo(
        name="finetune",
        summary="Fine-tune on the retained data (FT baseline)",
        paper="Warnecke et al. 2023 / Jia et al. 2023 (l1-sparse) baseline",
        kinds=("samples", "subjects", "classes"),
        goals=("forget",),
        needs=("forget", "retain"),
        defaults=DEFAULTS,
        search_space=SEARCH_SPACE,
        fn=finetune,
    )
)
