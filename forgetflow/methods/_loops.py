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


REPAIR = {"lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4, "batch_size": 64, "guard_weight": 0.1}


def repair_on_retain(result: UnlearnResult, forget: LoadedSplit, retain: LoadedSplit, *, kind: str, val: LoadedSplit | None, epochs: int, seed: int, device: str, time_budget_s: float | None, progress: bool) -> None:
    """forgetflow's repair step (`repair_epochs`), in place on the method's candidate: fine-tune on
    the retained data, with a guard on the forget set so the repair does not undo the forgetting.

    * class requests: the forgotten classes have no example in `retain`, but the features that
      told them apart are still there, and plain fine-tuning brings them back (measured: 5-33 % of
      the forgotten class's test images recognised again after 1-3 epochs). The guard adds
      -log(1 - p(true class)) on forget batches, a bounded term that is ~0 once the class is gone.
    * sample and subject requests: the guard is the held-out stop's level (`_heldout`): while the
      forget set is more accurate than held-out data of its classes, the step adds NegGrad+'s
      ascent on a forget batch; once it is at that level, the step is retain descent only.

    Runs within the rest of the time budget; the result's seconds, config, log and stopped_because
    say what it did."""
    import math

    remaining = None if time_budget_s is None else max(0.0, time_budget_s - result.seconds)
    timer = Timer(remaining)
    model = result.model
    generator = torch.Generator().manual_seed(seed + 7919)
    optimizer = sgd(model, REPAIR)
    weight = REPAIR["guard_weight"]
    heldout = None
    if kind != "classes":
        from forgetflow.methods._heldout import HeldoutStop

        heldout = HeldoutStop("repair_epochs", model, forget, val, device)
    log: list[dict] = []
    stopped = f"{epochs} repair epoch(s) done"
    with progress_bar(epochs, "repair on retain", progress) as bar:
        for epoch in range(epochs):
            if timer.over_budget():
                stopped = f"time budget reached after {epoch} repair epoch(s)"
                break
            model.train()
            forget_batches = cycle(index_batches(len(forget.labels), REPAIR["batch_size"], generator))
            totals, steps, guarded = 0.0, 0, 0
            for index in index_batches(len(retain.labels), REPAIR["batch_size"], generator):
                if budget_spent(timer):
                    break
                xr, yr = batch_tensors(retain, index, device)
                guard = heldout is None or not heldout.done
                with autocast(device):
                    loss = F.cross_entropy(model(xr).float(), yr)
                    totals += float(loss.detach())
                    if guard:
                        xf, yf = batch_tensors(forget, next(forget_batches), device)
                        logits_f = model(xf).float()
                        if heldout is None:  # bounded suppression of the forgotten classes
                            p_true = logits_f.softmax(1).gather(1, yf[:, None]).squeeze(1)
                            loss = loss + torch.log1p(-p_true.clamp(max=1 - 1e-6)).neg().mean()
                        else:  # NegGrad+ ascent, only while the forget set is above the held-out level
                            loss = (1 - weight) * loss - weight * F.cross_entropy(logits_f, yf)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                steps += 1
                guarded += int(guard and heldout is not None)
                if heldout is not None:
                    heldout.reached()
            row = {"repair_epoch": epoch + 1, "retain_loss": totals / max(steps, 1)}
            if heldout is not None:
                row.update(ascent_steps=guarded, forget_accuracy=heldout.last)
            log.append(row)
            bar.update(1)
            if budget_spent(timer):
                stopped = f"time budget reached in repair epoch {epoch + 1} of {epochs}"
                break
    model.eval()
    result.seconds += timer.elapsed
    result.config = {**result.config, "repair_epochs": epochs}
    result.log = list(result.log) + log
    result.stopped_because = f"{result.stopped_because}; repair: {stopped}" if result.stopped_because else f"repair: {stopped}"
