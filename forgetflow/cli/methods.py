"""`forgetflow methods`: the unlearning methods, what they serve and need, and their paper defaults."""

from __future__ import annotations

import json

import typer

from forgetflow.cli.common import WorkspaceOption, console


def method_rows() -> list[dict]:
    """One JSON-ready row per registered method (imports torch: call inside a command)."""
    from forgetflow.methods import IMPORT_ERRORS, list_methods

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
        if as_json:
            typer.echo(json.dumps(rows, indent=2, default=str))
            return
        from rich.table import Table

        table = Table(title="Unlearning methods", show_lines=True)
        for column in ("name", "kinds", "goals", "needs", "defaults"):
            table.add_column(column, overflow="fold")
        for row in rows:
            defaults = ", ".join(f"{k}={v}" for k, v in row["defaults"].items())
            table.add_row(f"[bold]{row['name']}[/]\n{row['summary']}", ", ".join(row["kinds"]), ", ".join(row["goals"]), ", ".join(row["needs"]), defaults)
        console.print(table)
