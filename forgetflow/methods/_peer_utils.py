"""Shared plumbing for the peer methods (SalUn, SCRUB, SSD, l1-sparse, Bad Teacher, Boundary Shrink).

One job each: merge and check a config, check the inputs a method needs, hold a split as tensors
on the device and batch it reproducibly, the temperature-scaled KL of knowledge distillation, and
packing the result. Nothing here decides an algorithm.
"""

from __future__ import annotations

import copy
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from forgetflow.data.store import LoadedSplit
from forgetflow.device import seed_everything
from forgetflow.errors import ConfigError
from forgetflow.methods.base import GOALS, KINDS, MethodInfo, MissingInputError, Timer, UnlearnResult, UnsupportedRequestError
from forgetflow.training import autocast, to_tensor

def resolve_config(name: str, defaults: dict, config: dict | None) -> dict:
    """Paper defaults overridden by `config`, with types checked; unknown keys are refused, so a
    typo never silently runs the default (the registry checks this too; direct calls need it here)."""
    given = dict(config or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ConfigError(f"{name}: unknown config keys {unknown}", f"known keys: {sorted(defaults)}")
    merged = dict(defaults)
    for key, value in given.items():
        merged[key] = _coerce(name, key, defaults[key], value)
    return merged


def _coerce(name: str, key: str, default, value):
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: config {key!r} must be true or false, got {value!r}", "pass a boolean")
        return value
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name}: config {key!r} must be a number, got {value!r}", f"the paper default is {default!r}")
        if isinstance(default, float):
            return float(value)
        if not float(value).is_integer():
            raise ConfigError(f"{name}: config {key!r} must be a whole number, got {value!r}", f"the paper default is {default!r}")
        return int(value)
    if isinstance(default, str) and not isinstance(value, str):
        raise ConfigError(f"{name}: config {key!r} must be a string, got {value!r}", f"the default is {default!r}")
    return value


def check_request(info: MethodInfo, kind: str | None, goal: str | None) -> None:
    """Refuse a request kind or goal the method does not serve (None: not stated, not checked)."""
    if kind is not None and kind not in KINDS:
        raise UnsupportedRequestError(f"unknown request kind {kind!r}", f"use one of {list(KINDS)}")
    if goal is not None and goal not in GOALS:
        raise UnsupportedRequestError(f"unknown request goal {goal!r}", f"use one of {list(GOALS)}")
    if kind is not None and kind not in info.kinds:
        raise UnsupportedRequestError(f"{info.name} does not serve {kind!r} requests", f"it serves {list(info.kinds)}; pick another method")
    if goal is not None and goal not in info.goals:
        raise UnsupportedRequestError(f"{info.name} does not serve the goal {goal!r}", f"it serves {list(info.goals)}; pick another method")


def require_split(split: LoadedSplit | None, what: str, method: str) -> LoadedSplit:
    if split is None or len(split.labels) == 0:
        raise MissingInputError(f"{method} needs a non-empty {what} set", f"pass {what}= (a LoadedSplit) to the method")
    return split


def require_positive(name: str, cfg: dict, keys: tuple[str, ...]) -> None:
    for key in keys:
        if not cfg[key] > 0:
            raise ConfigError(f"{name}: config {key!r} must be > 0, got {cfg[key]!r}", "pass a positive value")


def working_copy(model: nn.Module, device: str) -> nn.Module:
    """A trainable deep copy on `device`; the caller's model is never touched."""
    return copy.deepcopy(model).to(device)


def frozen_copy(model: nn.Module, device: str) -> nn.Module:
    """A deep copy in eval mode with gradients off, used as a teacher or reference."""
    frozen = copy.deepcopy(model).to(device).eval()
    for p in frozen.parameters():
        p.requires_grad_(False)
    return frozen


def random_init_copy(model: nn.Module, device: str, seed: int) -> nn.Module:
    """Same architecture, freshly initialised weights (seeded); the input normalisation is kept."""
    fresh = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in fresh.modules():
            if module is not fresh and hasattr(module, "reset_parameters"):
                module.reset_parameters()
    return frozen_copy(fresh, device)


class Tensors:
    """A split as float [0, 1] NCHW images and int64 labels on the device, batched reproducibly.

    The whole split is converted once (no per-batch host-to-device copies): fine for the forget,
    retain and training sets of digits, MNIST-like data and CIFAR-10 (~0.6 GB as float32).
    """

    def __init__(self, split: LoadedSplit, device: str):
        self.x = to_tensor(split.images).to(device)
        self.y = torch.from_numpy(np.ascontiguousarray(split.labels)).long().to(device)

    def __len__(self) -> int:
        return len(self.y)

    def batches(self, batch_size: int, generator: torch.Generator | None = None) -> Iterator[torch.Tensor]:
        """Index tensors covering the split once; shuffled when a generator is given."""
        n = len(self.y)
        order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
        order = order.to(self.y.device)
        for start in range(0, n, batch_size):
            yield order[start : start + batch_size]


def concat(a: LoadedSplit, b: LoadedSplit) -> LoadedSplit:
    return LoadedSplit(
        images=np.concatenate([a.images, b.images]),
        labels=np.concatenate([a.labels, b.labels]),
        sample_ids=np.concatenate([a.sample_ids, b.sample_ids]),
    )


def subsample(split: LoadedSplit, fraction: float, generator: torch.Generator) -> LoadedSplit:
    """A seeded random subset (at least one sample) of a split."""
    if fraction >= 1.0:
        return split
    keep = max(1, int(round(len(split.labels) * fraction)))
    index = torch.randperm(len(split.labels), generator=generator)[:keep].sort().values.numpy()
    return LoadedSplit(images=split.images[index], labels=split.labels[index], sample_ids=split.sample_ids[index])


def logits_of(model: nn.Module, x: torch.Tensor, device: str) -> torch.Tensor:
    """Forward under mixed precision on CUDA; logits returned in float32 for stable losses."""
    with autocast(device):
        return model(x).float()


def kd_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher_T || student_T) * T^2, averaged over the batch (Hinton et al. distillation loss)."""
    t = temperature
    log_p_student = F.log_softmax(student_logits / t, dim=1)
    p_teacher = F.softmax(teacher_logits / t, dim=1)
    return F.kl_div(log_p_student, p_teacher, reduction="batchmean") * (t * t)


def make_optimizer(params, name: str, lr: float, momentum: float = 0.0, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise ConfigError(f"unknown optimizer {name!r}", "use 'sgd' or 'adam'")


def start(seed: int) -> torch.Generator:
    """Seed everything and return the CPU generator that orders batches and draws labels."""
    seed_everything(seed)
    return torch.Generator().manual_seed(seed)


def epochs_bar(epochs: int, desc: str, progress: bool):
    from tqdm.auto import tqdm

    return tqdm(range(epochs), desc=desc, disable=not progress, unit="epoch", leave=False)


def optimizer_epochs(model: nn.Module, optimizer: torch.optim.Optimizer, epochs: int, desc: str, progress: bool, timer: Timer, batch_losses, *, loss_key: str = "loss", epoch_fields=None) -> tuple[list[dict], str]:
    """The epoch loop of the fine-tuning peers: `batch_losses(epoch)` yields one loss per batch, each
    minimised by one optimizer step; stops at the time budget. Returns (per-epoch log, why it stopped).
    `epoch_fields(epoch)` adds values to an epoch's log entry (e.g. a schedule's weight)."""
    log, stopped = [], "epochs done"
    for epoch in epochs_bar(epochs, desc, progress):
        model.train()
        losses = []
        for loss in batch_losses(epoch):
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            if timer.over_budget():
                break
        log.append({"epoch": epoch + 1, **(epoch_fields(epoch) if epoch_fields else {}), loss_key: sum(losses) / max(len(losses), 1)})
        if timer.over_budget():
            stopped = "time budget"
            break
    return log, stopped


def finish(model: nn.Module, timer: Timer, cfg: dict, log: list[dict], stopped_because: str, extra: dict | None = None) -> UnlearnResult:
    model.eval()
    return UnlearnResult(model=model.cpu(), seconds=timer.elapsed, config=dict(cfg), log=log, stopped_because=stopped_because, extra=extra or {})
