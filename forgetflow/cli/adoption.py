"""`forgetflow adopt`: register a model trained elsewhere as the first version (the champion)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from forgetflow.cli.common import WorkspaceOption, console, settings_for, text


def adopt(
    checkpoint: Annotated[Path, typer.Argument(help="A state_dict file (torch.save(model.state_dict(), PATH)) or a forgetflow checkpoint.")],
    arch: Annotated[Optional[str], typer.Option("--arch", help="torchvision:NAME, MODULE:CALLABLE, small_cnn or resnet18. Default: the checkpoint's, else params.yaml's model.arch.")] = None,
    dataset: Annotated[Optional[str], typer.Option("--dataset", "-d", help="Dataset under data/ it was trained on (default: the only one).")] = None,
    mean: Annotated[Optional[str], typer.Option(help="Per-channel mean the model was trained with, on [0, 1] pixels (e.g. 0.485,0.456,0.406). Default: the train split's.")] = None,
    std: Annotated[Optional[str], typer.Option(help="Per-channel std, as --mean. --mean 0 --std 1: no normalisation.")] = None,
    force: Annotated[bool, typer.Option(help="Register it even if a champion exists (it becomes the champion).")] = False,
    workspace: WorkspaceOption = None,
) -> None:
    """Adopt a trained model: strict load, evaluation on val and test, layer statistics, registration as champion."""
    from forgetflow.adopt import adopt as adopt_model

    settings = settings_for(workspace, existing=True)
    with console.status(f"adopting {text(checkpoint.name)} ..."):
        done = adopt_model(settings, checkpoint, arch=arch, dataset=dataset, mean=mean, std=std, force=force)
    console.print(f"[green]adopted[/] {text(checkpoint.name)} (SHA-256 {text(done.sha256[:16])}...) as {text(settings.registered_model_name)} v{text(done.version)}, aliases: {text(', '.join(done.aliases))}")
    console.print(f"architecture {text(done.arch)}; dataset {text(done.dataset)} (DVC md5 {text(done.data_md5)})")
    scores = ", ".join(f"{split} {done.metrics[f'{split}_accuracy']:.2f}%" for split in ("val", "test") if f"{split}_accuracy" in done.metrics)
    console.print(f"accuracy: {text(scores or 'no val/test samples')}; layer statistics (PGU): {text(done.layer_stats)}")
    if done.params_changed:
        console.print(f"[yellow]params.yaml:[/] set {text(done.params_changed)} (the reference is retrained with it)")
    console.print("The reference retrain uses params.yaml's `train:` recipe: set it to the recipe this model was trained with (README, 'Your own model and data').")


def register(app: typer.Typer) -> None:
    app.command()(adopt)
