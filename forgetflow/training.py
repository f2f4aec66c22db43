"""The one training recipe (params.yaml `train`), used for the base model and the retrained reference."""

from __future__ import annotations

import contextlib
import math
import time
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
    )


def autocast(device: str):
    """Mixed precision on CUDA (bfloat16), full precision elsewhere (CPU runs stay bit-exact)."""
    if device.startswith("cuda"):
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def augment_batch(x: torch.Tensor, recipe: TrainParams, generator: torch.Generator) -> torch.Tensor:
    """Random shifts (zero-padded crop) and optional horizontal flips, drawn from `generator`."""
    pad = recipe.crop_padding
    if pad > 0:
        n, _, h, w = x.shape
        padded = F.pad(x, (pad, pad, pad, pad))
        shifts = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator)
        out = torch.empty_like(x)
        for dy in range(2 * pad + 1):
            for dx in range(2 * pad + 1):
                mask = (shifts[:, 0] == dy) & (shifts[:, 1] == dx)
                if mask.any():
                    out[mask] = padded[mask, :, dy : dy + h, dx : dx + w]
        x = out
    if recipe.hflip:
        flip = torch.rand(x.shape[0], generator=generator) < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
    return x


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


def train_model(spec: ModelSpec, recipe: TrainParams, train: LoadedSplit, val: LoadedSplit | None = None, *, device: str = "cpu", seed: int | None = None, progress: bool = True) -> TrainResult:
    """Train from scratch with the recipe; deterministic on CPU for a given seed."""
    from tqdm.auto import tqdm

    seed = recipe.seed if seed is None else seed
    seed_everything(seed)
    model = build_model(spec).to(device)
    optimizer = make_optimizer(model, recipe)
    generator = torch.Generator().manual_seed(seed)
    images, labels = train.images, torch.from_numpy(train.labels.copy())
    history: list[dict] = []
    started = time.perf_counter()
    for epoch in range(recipe.epochs):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(epoch, recipe)
        model.train()
        order = torch.randperm(len(labels), generator=generator)
        total_loss, seen = 0.0, 0
        batches = range(0, len(order), recipe.batch_size)
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{recipe.epochs}", leave=False, disable=None if progress else True, unit="batch")  # None: off when not a TTY
        for start in bar:
            index = order[start : start + recipe.batch_size]
            x = to_tensor(images[index.numpy()])
            if recipe.augment:
                x = augment_batch(x, recipe, generator)
            x, y = x.to(device), labels[index].to(device)
            with autocast(device):
                loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += float(loss.detach()) * len(index)
            seen += len(index)
        row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], "train_loss": total_loss / max(seen, 1)}
        if val is not None and len(val.labels):
            metrics = evaluate(model, val, device)
            row.update(val_accuracy=metrics["accuracy"], val_loss=metrics["loss"])
        history.append(row)
        if progress:
            tqdm.write(f"epoch {epoch + 1:>3}/{recipe.epochs}  loss {row['train_loss']:.4f}" + (f"  val acc {row['val_accuracy']:.2f}%" if "val_accuracy" in row else ""))
    model.eval()
    return TrainResult(model=model.cpu(), history=history, seconds=time.perf_counter() - started)
