"""Train the base classifier on a dataset version and prepare everything registration needs."""

from __future__ import annotations

import csv
import json
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from forgetflow.data.store import DatasetVersion
from forgetflow.params import Params
from forgetflow.settings import Settings
from forgetflow.workspace import write_atomic


@dataclass
class TrainedModel:
    checkpoint: str
    scratch_dir: str
    metrics: dict
    seed: int
    device: str
    seconds: float
    history_csv: str
    history_plot: str | None
    extra: dict = field(default_factory=dict)


def scratch_dir(settings: Settings) -> Path:
    path = settings.state_dir / "scratch" / uuid.uuid4().hex[:12]
    path.mkdir(parents=True)
    return path


def train_base_model(settings: Settings, params: Params, dataset_name: str, data_md5: str, *, progress: bool = True) -> TrainedModel:
    from forgetflow.architectures import check_fits
    from forgetflow.layer_stats import layer_stats_if_supported
    from forgetflow.models import build_model, save_checkpoint
    from forgetflow.training import evaluate, model_spec_for, train_model

    version = DatasetVersion(settings.data_dir / dataset_name)
    train, val, test = (version.load(split) for split in ("train", "val", "test"))
    spec = model_spec_for(params.model, version.meta)
    check_fits(build_model(spec), spec.in_channels, spec.image_hw, spec.num_classes)  # a clear error before any training
    device = settings.resolved_device()
    seed = params.train.seed if settings.seed is None else settings.seed
    result = train_model(spec, params.train, train, val, device=device, seed=seed, progress=progress)
    model = result.model
    metrics = {}
    for split_name, data in (("train", train), ("val", val), ("test", test)):
        scores = evaluate(model, data)
        metrics[f"{split_name}_accuracy"] = scores["accuracy"]
        metrics[f"{split_name}_loss"] = scores["loss"]
    metrics["train_seconds"] = result.seconds

    layer_stats, _ = layer_stats_if_supported(model, train.images) if params.train.store_layer_stats else (None, None)
    work = scratch_dir(settings)
    checkpoint = save_checkpoint(
        model,
        work / "checkpoint.pt",
        extra={"dataset": dataset_name, "data_md5": data_md5, "recipe_hash": params.recipe_hash(), "seed": seed, "class_names": version.class_names, "metrics": metrics},
        layer_stats=layer_stats,
    )
    history_csv, history_plot = write_reports(settings, result.history, metrics)
    return TrainedModel(str(checkpoint), str(work), metrics, seed, device, result.seconds, str(history_csv), str(history_plot) if history_plot else None)


def write_reports(settings: Settings, history: list[dict], metrics: dict) -> tuple[Path, Path | None]:
    """reports/metrics.json and reports/training_history.csv (DVC metrics/plots) plus a PNG."""
    reports = settings.workspace / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    write_atomic(reports / "metrics.json", json.dumps({k: round(v, 6) for k, v in metrics.items()}, indent=2) + "\n")
    history_csv = reports / "training_history.csv"
    columns = list(history[0].keys()) if history else ["epoch"]
    with open(history_csv, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)
    return history_csv, plot_history(history, reports / "training_history.png")


def plot_history(history: list[dict], path: Path) -> Path | None:
    if not history:
        return None
    from forgetflow.plotting import pyplot

    plt = pyplot()

    epochs = [row["epoch"] for row in history]
    fig, loss_ax = plt.subplots(figsize=(6, 3.5))
    loss_ax.plot(epochs, [row["train_loss"] for row in history], color="tab:blue", label="train loss")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("train loss", color="tab:blue")
    if "val_accuracy" in history[0]:
        acc_ax = loss_ax.twinx()
        acc_ax.plot(epochs, [row["val_accuracy"] for row in history], color="tab:orange", label="val accuracy")
        acc_ax.set_ylabel("val accuracy (%)", color="tab:orange")
    loss_ax.set_title("Base model training")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def cleanup(trained: TrainedModel) -> None:
    shutil.rmtree(trained.scratch_dir, ignore_errors=True)
