"""`forgetflow calibrate`: choose the method ladders on this workspace's own model and data."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer
from rich.markup import escape

from forgetflow.cli.common import WorkspaceOption, console, settings_for, text, use_prefect

PROXY_CHOICES = ("samples", "subjects", "classes", "misclassify", "relabel")


def calibrate(
    kinds: Annotated[Optional[str], typer.Option(help=f"Comma-separated proxy kinds (default: all of {', '.join(PROXY_CHOICES)}).")] = None,
    max_configs: Annotated[int, typer.Option(min=1, max=20, help="Configs tried per method: the paper default, then short ones from its search space.")] = 3,
    max_time_ratio: Annotated[float, typer.Option(min=0.01, max=1.0, help="A rung may take at most this fraction of a retrain's wall time.")] = 0.25,
    seed: Annotated[int, typer.Option(help="Seed of the proxy draws and the method runs.")] = 0,
    show: Annotated[bool, typer.Option("--show", help="Print the current calibration instead of running one.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="With --show: the whole calibration.json.")] = False,
    workspace: WorkspaceOption = None,
) -> None:
    """Tune and order the unlearning methods on the champion and data of this workspace.

    Draws proxy requests from the train split (10% random samples, a few subjects, one class, k
    instances to misclassify and to relabel), retrains one proxy reference per forget proxy, runs
    each method's search space with selection on the validation split only, and writes the ladders
    to .forgetflow/calibration.json (logged to MLflow with the trial table and a plot). Deletion
    batches use it from then on, unless params.yaml pins unlearning.methods for a kind and goal.
    """
    settings = settings_for(workspace, existing=True)
    if show:
        show_calibration(settings, as_json)
        return
    chosen = None
    if kinds:
        chosen = [k.strip() for k in kinds.split(",") if k.strip()]
        unknown = [k for k in chosen if k not in PROXY_CHOICES]
        if unknown or not chosen:
            raise typer.BadParameter(f"unknown proxy kind(s) {', '.join(map(repr, unknown)) or '(none given)'}; choose from {', '.join(PROXY_CHOICES)}", param_hint="--kinds")
    use_prefect(settings)
    from flows.calibrate import calibrate as calibrate_flow

    result = calibrate_flow(workspace=str(settings.workspace), kinds=chosen, max_configs=max_configs, max_time_ratio=max_time_ratio, seed=seed)
    print_ladders(result)


def show_calibration(settings, as_json: bool = False) -> None:
    from forgetflow.deletion.policy import calibration_path, load_calibration

    document = load_calibration(settings)
    if document is None:
        console.print(f"no calibration in {text(calibration_path(settings))}: deletion batches use the shipped ladders (`forgetflow methods` lists them). Run `forgetflow calibrate`.")
        return
    if as_json:
        typer.echo(json.dumps(document, indent=2))
        return
    print_ladders(document)
    from forgetflow.tracking import current_version

    champion = current_version(settings)
    if champion is not None and str(champion["version"]) != document["champion_version"]:
        console.print(f"[yellow]made on champion v{text(document['champion_version'])}; the champion is now v{text(champion['version'])}[/]: re-run `forgetflow calibrate` if the model changed much")


def print_ladders(document: dict) -> None:
    from rich.table import Table

    table = Table(title=text(f"Calibration {document['calibration_id']} (champion v{document['champion_version']}, {document['seconds']:.0f} s)"), title_justify="left")
    for column in ("kind", "goal", "rung", "method", "config", "time budget"):
        table.add_column(column)
    for kind, goals in sorted(document["ladders"].items()):
        for goal, rungs in sorted(goals.items()):
            for index, rung in enumerate(rungs):
                config = ", ".join(f"{k}={v}" for k, v in sorted(rung["config"].items())) or "paper default"
                table.add_row(text(kind), text(goal), str(index + 1), text(rung["method"]), escape(config), text(f"{rung.get('time_budget_s') or '-'} s"))
    console.print(table)
    for note in document.get("notes", []):
        console.print(f"  note: {escape(note)}")
    if document.get("mlflow_run_id"):
        console.print(f"  MLflow run {text(document['mlflow_run_id'])} holds the trial table and the plot")


def register(app: typer.Typer) -> None:
    app.command()(calibrate)
