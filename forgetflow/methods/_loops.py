"""Small shared pieces of the gradient-based methods: batching, seeded order, one epoch, accuracy.

All loops take uint8 `LoadedSplit`s (converted batch by batch with `training.to_tensor`), run the
forward pass under `training.autocast(device)` (bf16 on CUDA, exact on CPU) and draw every random
order from an explicit `torch.Generator`, so a CPU run is a function of its seed.
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from forgetflow.data.store import LoadedSplit
from forgetflow.methods.base import Timer, UnlearnResult
from forgetflow.training import autocast, to_tensor


def num_classes_of(model: nn.Module) -> int:
    """Output width: the spec when there is one, else the last Linear layer."""
    spec = getattr(model, "spec", None)
    if spec is not None:
        return int(spec.num_classes)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return int(linears[-1].out_features)


def index_batches(n: int, batch_size: int, generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """Index batches over n items: shuffled when a generator is given, in order otherwise."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    return [order[start : start + batch_size] for start in range(0, n, batch_size)]


def batch_tensors(split: LoadedSplit, index: torch.Tensor, device: str, labels: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    rows = index.numpy()
    source = split.labels if labels is None else labels
    return to_tensor(split.images[rows]).to(device), torch.from_numpy(np.asarray(source[rows], dtype=np.int64)).to(device)


def freeze_batchnorm(model: nn.Module) -> None:
    """BatchNorm uses and keeps its running statistics (eval mode) while the rest trains."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


@torch.no_grad()
def count_correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: str, batch_size: int = 512) -> int:
    """Top-1 hits of float inputs in [0, 1]; model left in eval mode."""
    model.eval()
    correct = 0
    for start in range(0, len(y), batch_size):
        with autocast(device):
            logits = model(x[start : start + batch_size].to(device))
        correct += int((logits.float().argmax(1).cpu() == y[start : start + batch_size].cpu()).sum())
    return correct


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: str, batch_size: int = 512) -> float:
    """Top-1 accuracy (percent) of float inputs in [0, 1]; model left in eval mode."""
    correct = count_correct(model, x, y, device, batch_size)
    return 100.0 * correct / len(y) if len(y) else float("nan")


def split_accuracy(model: nn.Module, split: LoadedSplit | None, device: str, mask: np.ndarray | None = None) -> float:
    if split is None:
        return float("nan")
    images, labels = (split.images, split.labels) if mask is None else (split.images[mask], split.labels[mask])
    return accuracy(model, to_tensor(images), torch.from_numpy(np.array(labels, copy=True)), device)  # a copy: store arrays are read-only


def progress_bar(total: int, desc: str, progress: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, disable=not progress, unit="epoch")


def sgd(model: nn.Module, config: dict) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=config["lr"], momentum=config.get("momentum", 0.0), weight_decay=config.get("weight_decay", 0.0))


def run_epochs(
    model: nn.Module,
    *,
    epochs: int,
    epoch_fn: Callable[[int], dict],
    timer: Timer,
    desc: str,
    progress: bool,
) -> tuple[list[dict], str]:
    """Call epoch_fn(epoch) -> log row for each epoch, honouring the time budget.

    epoch_fn is expected to stop its own batch loop once the budget is spent (`budget_spent`), so a
    method overshoots its budget by at most one step, not one epoch; the epoch cut short is logged
    and ends the run."""
    log: list[dict] = []
    stopped = f"{epochs} epochs done"
    with progress_bar(epochs, desc, progress) as bar:
        for epoch in range(epochs):
            if timer.over_budget():
                stopped = f"time budget of {timer.budget_s:.1f}s reached after {epoch} epochs"
                break
            row = {"epoch": epoch + 1, **epoch_fn(epoch)}
            log.append(row)
            bar.update(1)
            bar.set_postfix({k: round(v, 4) for k, v in row.items() if isinstance(v, float)})
            if timer.over_budget() and epoch + 1 < epochs:
                stopped = f"time budget of {timer.budget_s:.1f}s reached in epoch {epoch + 1} of {epochs}"
                break
    return log, stopped


def budget_spent(timer: Timer | None) -> bool:
    """True once a batch loop should stop: its method's time budget is used up."""
    return timer is not None and timer.over_budget()


def supervised_pass(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    split: LoadedSplit,
    *,
    batch_size: int,
    device: str,
    generator: torch.Generator,
    sign: float = 1.0,
    labels: np.ndarray | None = None,
    timer: Timer | None = None,
) -> float:
    """One shuffled pass of sign * cross-entropy over `split` (sign -1 is gradient ascent); stops
    early, between steps, once `timer`'s budget is spent."""
    model.train()
    total, seen = 0.0, 0
    for index in index_batches(len(split.labels), batch_size, generator):
        if budget_spent(timer):
            break
        x, y = batch_tensors(split, index, device, labels)
        with autocast(device):
            loss = F.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        (sign * loss).backward()
        optimizer.step()
        total += float(loss.detach()) * len(index)
        seen += len(index)
    return total / max(seen, 1)


def cycle(batches: list) -> Iterator:
    while True:
        yield from batches


def finish(model: nn.Module, timer: Timer, config: dict, log: list[dict], stopped: str, **extra) -> UnlearnResult:
    model.eval()
    return UnlearnResult(model=model, seconds=timer.elapsed, config=config, log=log, stopped_because=stopped, extra=extra)
