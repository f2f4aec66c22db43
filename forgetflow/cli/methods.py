"""`forgetflow methods`: the unlearning methods, what they serve and need, and their paper defaults."""

from __future__ import annotations

import json

import typer
from rich.markup import escape

from forgetflow.cli.common import WorkspaceOption, console


def method_rows() -> list[dict]:
    """One JSON-ready row per registered method (imports torch: call inside a command)."""
    from forgetflow.methods import IMPORT_ERRORS, list_methods
    from forgetflow.methods._measured import MEASURED

    rows = [
        {
            "name": info.name,
            "summary": info.summary,
            "paper": info.paper,
            "kinds": list(info.kinds),
            "goals": list(info.goals),
            "needs": list(info.needs),
            "defaults": info.defaults,
            "search_space": info.search_space,
            "measured": MEASURED.get(info.name, ""),
        }
        for info in list_methods()
    ]
    for module, error in IMPORT_ERRORS.items():
        rows.append({"name": f"({module})", "summary": f"failed to import: {error}", "paper": "", "kinds": [], "goals": [], "needs": [], "defaults": {}, "search_space": {}})
    return rows


def register(app: typer.Typer) -> None:
    @app.command("methods")
    def methods(
        workspace: WorkspaceOption = None,
        as_json: bool = typer.Option(False, "--json", help="Machine-readable output: one object per method."),
    ) -> None:
        """List the unlearning methods: request kinds and goals served, inputs needed, paper defaults."""
        rows = method_rows()
        ladders = ladder_rows(workspace)
        if as_json:
            typer.echo(json.dumps({"methods": rows, "ladders": ladders}, indent=2, default=str))
            return
        from rich.table import Table

        table = Table(title="Unlearning methods", show_lines=True)
        for column in ("name", "kinds", "goals", "needs", "defaults", "measured here"):
            table.add_column(column, overflow="fold")
        for row in rows:
            defaults = ", ".join(f"{k}={v}" for k, v in row["defaults"].items())
            table.add_row(f"[bold]{escape(row['name'])}[/]\n{escape(row['summary'])}", ", ".join(row["kinds"]), ", ".join(row["goals"]), ", ".join(row["needs"]), escape(defaults), escape(row["measured"]))
        console.print(table)
        ladder_table = Table(title="Method ladders in force for this workspace (first passing rung is promoted)", title_justify="left")
        for column in ("kind", "goal", "ladder", "from"):
            ladder_table.add_column(column, overflow="fold")
        for row in ladders:
            ladder_table.add_row(row["kind"], row["goal"], escape(" -> ".join(row["rungs"])), escape(row["source"]))
        console.print(ladder_table)


def ladder_rows(workspace) -> list[dict]:
    """The ladder each (kind, goal) gets in this workspace, and where it comes from."""
    from forgetflow.deletion.policy import load_calibration, unlearning_policy
    from forgetflow.methods.base import GOALS, KINDS
    from forgetflow.params import load_params
    from forgetflow.cli.common import settings_for

    settings = settings_for(workspace)
    policy = unlearning_policy(load_params(settings.params_path))
    calibration = load_calibration(settings) if policy.use_calibration else None
    rows = []
    for kind in KINDS:
        for goal in GOALS:
            if kind == "classes" and goal != "forget":
                continue
            rungs, source = policy.ladder_for(kind, goal, calibration=calibration)
            rows.append({"kind": kind, "goal": goal, "rungs": [r.label() for r in rungs], "source": source})
    return rows
