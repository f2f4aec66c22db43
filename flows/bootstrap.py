"""Bootstrap: import or verify data -> train -> evaluate -> MLflow run -> register v1 -> champion."""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from tasks.registry import register_base
from tasks.training import train_base
from tasks.versioning import version_dataset
from tasks.workspace import prepare_workspace


def _run_name() -> str:
    return f"bootstrap-{flow_run.parameters.get('source', 'data')}"


@flow(name="forgetflow-bootstrap", flow_run_name=_run_name, log_prints=True)
def bootstrap(workspace: str, source: str = "digits", source_path: str | None = None, download: bool = False, reimport: bool = False, progress: bool = True) -> dict:
    prepared = prepare_workspace(workspace)
    data = version_dataset(workspace, source, source_path, download, reimport)
    trained = train_base(workspace, data["name"], data["md5"], progress)
    registration = register_base(workspace, data, trained, source, run_name=f"bootstrap-{data['name']}-{data['md5'][:8]}")
    summary = {
        "workspace": prepared["workspace"],
        "device": prepared["device"],
        "dataset": data,
        "metrics": trained["metrics"],
        "registration": registration,
        "flow_run_id": str(flow_run.id),
    }
    create_markdown_artifact(key="bootstrap-summary", markdown=summary_markdown(summary), description="forgetflow bootstrap")
    return summary


def summary_markdown(summary: dict) -> str:
    data, reg, m = summary["dataset"], summary["registration"], summary["metrics"]
    return "\n".join(
        [
            "# forgetflow bootstrap",
            "",
            "| | |",
            "|---|---|",
            f"| dataset | `{data['name']}` ({data['n_samples']} samples: {data['splits']}) |",
            f"| data version (DVC md5) | `{data['md5']}` |",
            f"| registered model | `{reg['name']}` version {reg['version']} (aliases: {', '.join(reg['aliases'])}) |",
            f"| MLflow run | `{reg['run_id']}` |",
            f"| accuracy train / val / test | {m['train_accuracy']:.2f}% / {m['val_accuracy']:.2f}% / {m['test_accuracy']:.2f}% |",
            f"| device | {summary['device']} |",
        ]
    )
