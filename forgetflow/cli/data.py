"""`forgetflow data ...`: import, inspect and verify dataset versions."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from forgetflow.cli.common import WorkspaceOption, console, settings_for, text

data_app = typer.Typer(help="Import, inspect and verify DVC-tracked dataset versions.", no_args_is_help=True)


@data_app.command("import")
def import_command(
    source: Annotated[str, typer.Argument(help="digits | fashion-mnist | mnist | cifar10 | imagefolder | manifest")],
    path: Annotated[Optional[str], typer.Argument(help="Folder with the source files (imagefolder: the class folders, optionally subjects.csv); manifest: the CSV file.")] = None,
    name: Annotated[Optional[str], typer.Option(help="Dataset name under data/. Default: the source, the folder's name (imagefolder) or the CSV's (manifest).")] = None,
    download: Annotated[bool, typer.Option(help="Let torchvision download the files (needs network).")] = False,
    workspace: WorkspaceOption = None,
) -> None:
    """Import SOURCE as a new dataset version under data/, tracked and pushed with DVC."""
    from forgetflow.data.importer import default_name, import_dataset
    from forgetflow.params import load_params

    settings = settings_for(workspace)
    params = load_params(settings.params_path)  # the workspace is set up only once the source checks out
    with console.status(f"importing {text(source)} ..."):
        info = import_dataset(settings, params, source, path, name=name or default_name(source, path), download=download)
    console.print(f"[green]imported[/] {text(info.name)}: {info.n_samples} samples {text(info.splits)}, {info.num_classes} classes, images {tuple(info.image_shape)}")
    console.print(f"data version (DVC md5): [bold]{text(info.md5)}[/]")


@data_app.command("show")
def show_command(name: Annotated[Optional[str], typer.Argument(help="Dataset name, e.g. digits. Default: the workspace's only dataset.")] = None, workspace: WorkspaceOption = None) -> None:
    """Show a dataset version: md5, splits, classes, shards."""
    from rich.table import Table

    from forgetflow.data.importer import default_dataset, describe
    from forgetflow.data.store import DatasetVersion

    settings = settings_for(workspace, existing=True)
    name = default_dataset(settings, name)
    info = describe(settings, name)
    version = DatasetVersion(settings.data_dir / name)
    table = Table(title=f"dataset {text(name)}", show_header=False)
    table.add_row("DVC md5", text(info.md5))
    table.add_row("samples", text(f"{info.n_samples} {info.splits}"))
    table.add_row("classes", text(", ".join(map(str, version.class_names))))
    table.add_row("subjects", str(version.manifest["subject_id"].nunique()))
    table.add_row("image shape", str(tuple(info.image_shape)))
    table.add_row("shards", str(len(version.meta["shards"])))
    console.print(table)


@data_app.command("verify")
def verify_command(name: Annotated[Optional[str], typer.Argument(help="Dataset name. Default: the workspace's only dataset.")] = None, workspace: WorkspaceOption = None) -> None:
    """Check every shard against its recorded SHA-256 and the workspace against DVC."""
    from forgetflow.data.importer import default_dataset, dvc_workspace
    from forgetflow.data.store import DatasetVersion

    settings = settings_for(workspace, existing=True)
    name = default_dataset(settings, name)
    root = settings.data_dir / name
    bad = DatasetVersion(root).verify()
    if bad:
        console.print(f"[red]corrupted or missing shards in {text(name)}:[/] {text(', '.join(bad))}")
        console.print("fix: `dvc checkout --force` in the workspace restores the tracked version")
        raise typer.Exit(1)
    clean = dvc_workspace(settings).status_clean(root)
    console.print(f"[green]ok[/] {text(name)}: every shard matches its hash; DVC status {'clean' if clean else '[yellow]modified[/]'}")
    if not clean:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
