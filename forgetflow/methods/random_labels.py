"""RL: fine-tune on the forget set with random labels, then on the retained data (SalUn's RL without a mask).

As in SalUn's `unlearn/RL.py` (CIFAR-10 path): each epoch is one pass over the forget set with
labels drawn once, uniformly over all classes (the true label can be drawn; `exclude_true_label`
draws over the other classes instead), then one pass over the retain data with true labels.
Defaults from the SalUn README: lr 0.013, 10 epochs; SGD momentum 0.9, weight decay 5e-4, batch 256.
"""

from __future__ import annotations

import numpy as np
import torch

from forgetflow.methods._loops import finish, num_classes_of, run_epochs, sgd, supervised_pass
from forgetflow.methods.base import MethodInfo, Timer, register

DEFAULTS = {"lr": 0.013, "epochs": 10, "batch_size": 256, "momentum": 0.9, "weight_decay": 5e-4, "exclude_true_label": False}
SEARCH_SPACE = {"lr": [1e-3, 5e-3, 1e-2, 1.3e-2, 5e-2], "epochs": [5, 10]}


def random_label_targets(labels: np.ndarray, num_classes: int, generator: torch.Generator, exclude_true: bool) -> np.ndarray:
    if not exclude_true:
        return torch.randint(0, num_classes, (len(labels),), generator=generator).numpy()
    offset = torch.randint(1, num_classes, (len(labels),), generator=generator).numpy()
    return (labels + offset) % num_classes


def random_labels(model, forget, *, retain, config, seed, device, time_budget_s=None, progress=True, **_):
    timer = Timer(time_budget_s)
    generator = torch.Generator().manual_seed(seed)
    optimizer = sgd(model, config)
    fake = random_label_targets(forget.labels, num_classes_of(model), generator, config["exclude_true_label"])

    def epoch(_):
        forget_loss = supervised_pass(model, optimizer, forget, batch_size=config["batch_size"], device=device, generator=generator, labels=fake, timer=timer)
        retain_loss = supervised_pass(model, optimizer, retain, batch_size=config["batch_size"], device=device, generator=generator, timer=timer)
        return {"random_label_loss": forget_loss, "retain_loss": retain_loss}

    log, stopped = run_epochs(model, epochs=config["epochs"], epoch_fn=epoch, timer=timer, desc="RL", progress=progress)
    return finish(model, timer, config, log, stopped)


INFO = register(
    MethodInfo(
        name="random_labels",
        summary="Random labels on the forget set, then fine-tune on retain (RL baseline)",
        paper="Golatkar et al. 2020 / Fan et al. 2024 (SalUn) baseline",
        kinds=("samples", "subjects", "classes"),
        goals=("forget",),
        needs=("forget", "retain"),
        defaults=DEFAULTS,
        search_space=SEARCH_SPACE,
        fn=random_labels,
    )
)
