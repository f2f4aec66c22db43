"""GA: gradient ascent on the forget set (maximise its cross-entropy).

Defaults: SGD momentum 0.9, weight decay 5e-4, 5 epochs, batch 256 (OPTML README command). The
README's lr 1e-4 is, per the maintainers (Unlearn-Sparse #5, Unlearn-Saliency #8), too small for
random forgetting; they recommend 5e-4 to 1e-3, so the default here is 5e-4. Needs only the forget
set; serves every kind with goal `forget`.
"""

from __future__ import annotations

import torch

from forgetflow.methods._loops import finish, run_epochs, sgd, supervised_pass
from forgetflow.methods.base import MethodInfo, Timer, register

DEFAULTS = {"lr": 5e-4, "epochs": 5, "batch_size": 256, "momentum": 0.9, "weight_decay": 5e-4}
SEARCH_SPACE = {"lr": [1e-5, 1e-4, 5e-4, 1e-3, 1e-2], "epochs": [1, 5, 10]}


def gradient_ascent(model, forget, *, config, seed, device, time_budget_s=None, progress=True, **_):
    timer = Timer(time_budget_s)
    generator = torch.Generator().manual_seed(seed)
    optimizer = sgd(model, config)

    def epoch(_):
        return {"forget_loss": supervised_pass(model, optimizer, forget, batch_size=config["batch_size"], device=device, generator=generator, sign=-1.0, timer=timer)}

    log, stopped = run_epochs(model, epochs=config["epochs"], epoch_fn=epoch, timer=timer, desc="GA", progress=progress)
    return finish(model, timer, config, log, stopped)


INFO = register(
    MethodInfo(
        name="gradient_ascent",
        summary="Gradient ascent on the forget set (GA baseline)",
        paper="Thudi et al. 2022 / Jia et al. 2023 (l1-sparse) baseline",
        kinds=("samples", "subjects", "classes"),
        goals=("forget",),
        needs=("forget",),
        defaults=DEFAULTS,
        search_space=SEARCH_SPACE,
        fn=gradient_ascent,
    )
)
