"""The one training recipe (params.yaml `train`), used for the base model and the retrained reference."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from forgetflow.data.store import LoadedSplit
from forgetflow.device import seed_everything
from forgetflow.models import ImageClassifier, ModelSpec, build_model
from forgetflow.params import ModelParams, TrainParams


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, C) -> float32 (N, C, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)


def model_spec_for(model_params: ModelParams, meta: dict) -> ModelSpec:
    h, w, c = meta["image_shape"]
    return ModelSpec(
        arch=model_params.arch,
        in_channels=c,
        num_classes=len(meta["class_names"]),
        image_size=h,
        width=model_params.width,
        dropout=model_params.dropout,
        mean=list(meta["mean"]),
        std=list(meta["std"]),
        image_width=w if w != h else None,
    )


def autocast(device: str):
    """Mixed precision on CUDA (bfloat16), full precision elsewhere (CPU runs stay bit-exact)."""
    if device.startswith("cuda"):
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def draw_augmentation(n: int, recipe: TrainParams, generator: torch.Generator) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The random shifts and flips for `n` images (drawn for a whole batch, so DDP ranks can share them)."""
    pad = recipe.crop_padding
    shifts = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator) if pad > 0 else None
    flips = torch.rand(n, generator=generator) < 0.5 if recipe.hflip else None
    return shifts, flips


def apply_augmentation(x: torch.Tensor, recipe: TrainParams, shifts: torch.Tensor | None, flips: torch.Tensor | None) -> torch.Tensor:
    """Random shifts (zero-padded crop) and horizontal flips, as drawn by `draw_augmentation`."""
    pad = recipe.crop_padding
    if shifts is not None:
        n, _, h, w = x.shape
        padded = F.pad(x, (pad, pad, pad, pad))
        out = torch.empty_like(x)
        for dy in range(2 * pad + 1):
            for dx in range(2 * pad + 1):
                mask = (shifts[:, 0] == dy) & (shifts[:, 1] == dx)
                if mask.any():
                    out[mask] = padded[mask, :, dy : dy + h, dx : dx + w]
        x = out
    if flips is not None:
        x = torch.where(flips.view(-1, 1, 1, 1), x.flip(3), x)
    return x


def augment_batch(x: torch.Tensor, recipe: TrainParams, generator: torch.Generator) -> torch.Tensor:
    """Random shifts (zero-padded crop) and optional horizontal flips, drawn from `generator`."""
    return apply_augmentation(x, recipe, *draw_augmentation(x.shape[0], recipe, generator))


def make_optimizer(model: nn.Module, recipe: TrainParams) -> torch.optim.Optimizer:
    if recipe.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)


def lr_at(epoch: int, recipe: TrainParams) -> float:
    if recipe.schedule == "cosine":
        return recipe.lr * 0.5 * (1 + math.cos(math.pi * epoch / recipe.epochs))
    if recipe.schedule == "exponential":
        return recipe.lr * recipe.final_lr_ratio ** (epoch / max(1, recipe.epochs - 1))
    return recipe.lr


@dataclass
class TrainResult:
    model: ImageClassifier
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0


@torch.no_grad()
def predict_logits(model: nn.Module, images: np.ndarray, device: str = "cpu", batch_size: int = 512) -> torch.Tensor:
    model.eval()
    outputs = []
    for start in range(0, len(images), batch_size):
        x = to_tensor(images[start : start + batch_size]).to(device)
        with autocast(device):
            outputs.append(model(x).float().cpu())
    return torch.cat(outputs) if outputs else torch.empty(0)


def evaluate(model: nn.Module, data: LoadedSplit, device: str = "cpu") -> dict:
    """Accuracy (percent) and mean cross-entropy on one split."""
    if len(data.labels) == 0:
        return {"accuracy": float("nan"), "loss": float("nan"), "n": 0}
    logits = predict_logits(model, data.images, device)
    labels = torch.from_numpy(data.labels.copy())
    return {
        "accuracy": float((logits.argmax(1) == labels).float().mean() * 100),
        "loss": float(F.cross_entropy(logits, labels)),
        "n": int(len(labels)),
    }


@dataclass(frozen=True)
class Shard:
    """Which part of every global batch this process trains on (rank r of `world_size` DDP processes)."""

    rank: int = 0
    world_size: int = 1
    all_reduce_sum: Callable[[list[float]], list[float]] | None = None  # sums floats over ranks (DDP only)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def epoch_batches(n: int, recipe: TrainParams, generator: torch.Generator, shard: Shard = Shard()):
    """One epoch of this process's batches: (sample indices, augmentation draws, global batch size).

    Every process draws the same permutation and augmentation from `generator` (seeded alike), so
    the processes stay in step and each takes a disjoint slice of every global batch of
    `recipe.batch_size` samples. With one process these are exactly the single-process batches.
    """
    order = torch.randperm(n, generator=generator)
    for start in range(0, n, recipe.batch_size):
        index = order[start : start + recipe.batch_size]
        draws = draw_augmentation(len(index), recipe, generator) if recipe.augment else (None, None)
        global_n = len(index)
        if shard.world_size > 1:
            if global_n < shard.world_size:
                continue  # a last batch too small to give every rank a sample (< world_size samples, reshuffled every epoch)
            mine = slice(shard.rank, None, shard.world_size)  # strided: per-rank sizes differ by at most one
            index = index[mine]
            draws = tuple(d[mine] if d is not None else None for d in draws)
        yield index, draws, global_n


def fit(model: nn.Module, recipe: TrainParams, train: LoadedSplit, val: LoadedSplit | None, *, device: str, generator: torch.Generator, eval_model: nn.Module | None = None, shard: Shard = Shard(), progress: bool = True) -> list[dict]:
    """The epoch loop shared by `train_model` and the DDP retrain; returns the history (per epoch).

    `shard` says which slice of every global batch this process trains on (`epoch_batches`).
    `eval_model` is the unwrapped model (under DDP, `model` is the wrapper); only rank 0 validates.
    """
    from tqdm.auto import tqdm

    eval_model = model if eval_model is None else eval_model
    optimizer = make_optimizer(model, recipe)
    images, labels = train.images, torch.from_numpy(train.labels.copy())
    distributed = shard.world_size > 1
    history: list[dict] = []
    for epoch in range(recipe.epochs):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(epoch, recipe)
        model.train()
        total_loss, seen = 0.0, 0
        show = progress and shard.is_main
        batches = epoch_batches(len(labels), recipe, generator, shard)
        total = math.ceil(len(labels) / recipe.batch_size)
        bar = tqdm(batches, total=total, desc=f"epoch {epoch + 1}/{recipe.epochs}", leave=False, disable=None if show else True, unit="batch")  # None: off when not a TTY
        for index, draws, global_n in bar:
            x = to_tensor(images[index.numpy()])
            if recipe.augment:
                x = apply_augmentation(x, recipe, *draws)
            x, y = x.to(device), labels[index].to(device)
            with autocast(device):
                if distributed:
                    # DDP averages gradients over ranks: sum/global_n * world_size makes that average the
                    # mean over the global batch even when the ranks' slices differ in size.
                    loss_sum = F.cross_entropy(model(x), y, reduction="sum")
                    loss = loss_sum * (shard.world_size / global_n)
                else:
                    loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += float(loss_sum.detach()) if distributed else float(loss.detach()) * len(index)
            seen += len(index)
        if distributed:
            total_loss, seen = shard.all_reduce_sum([total_loss, float(seen)])
        row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], "train_loss": total_loss / max(seen, 1)}
        if shard.is_main and val is not None and len(val.labels):
            metrics = evaluate(eval_model, val, device)
            row.update(val_accuracy=metrics["accuracy"], val_loss=metrics["loss"])
        history.append(row)
        if show:
            tqdm.write(f"epoch {epoch + 1:>3}/{recipe.epochs}  loss {row['train_loss']:.4f}" + (f"  val acc {row['val_accuracy']:.2f}%" if "val_accuracy" in row else ""))
    return history


def train_model(spec: ModelSpec, recipe: TrainParams, train: LoadedSplit, val: LoadedSplit | None = None, *, device: str = "cpu", seed: int | None = None, progress: bool = True) -> TrainResult:
    """Train from scratch with the recipe; deterministic on CPU for a given seed."""
    seed = recipe.seed if seed is None else seed
    seed_everything(seed)
    model = build_model(spec).to(device)
    generator = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    history = fit(model, recipe, train, val, device=device, generator=generator, progress=progress)
    model.eval()
    return TrainResult(model=model.cpu(), history=history, seconds=time.perf_counter() - started)
