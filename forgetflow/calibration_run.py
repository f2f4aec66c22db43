"""Calibration of one workspace: load the champion and the current data, run `calibration.calibrate`,
write `.forgetflow/calibration.json` (what the unlearning policy reads) and log one MLflow run with
the trial table, the selected ladders and a plot.

The file holds methods, configs and numbers only: no sample or subject ID (proxy requests are
described by their size). It records which champion version and data version it was made on, so
`forgetflow calibrate --show` and the policy can say when it is stale.
"""

from __future__ import annotations

import csv
import json
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from forgetflow.settings import Settings
from forgetflow.workspace import write_atomic

FORMAT = 1


def calibrate_workspace(settings: Settings, *, kinds=None, max_configs: int = 3, max_time_ratio: float = 0.25, seed: int = 0, progress: bool = True, log=print) -> dict:
    from forgetflow.calibration import PROXY_KINDS, calibrate, plot_calibration
    from forgetflow.data.importer import dvc_workspace
    from forgetflow.deletion.policy import calibration_path, unlearning_policy
    from forgetflow.errors import ForgetflowError
    from forgetflow.evaluation.config import evaluation_params
    from forgetflow.models import load_checkpoint
    from forgetflow.params import load_params
    from forgetflow.tracking import current_version, download_checkpoint
    from forgetflow.validation.validate import current_dataset

    params = load_params(settings.params_path)
    champion = current_version(settings)
    if champion is None:
        raise ForgetflowError("there is no champion model to calibrate on", "bootstrap first: forgetflow bootstrap")
    version = current_dataset(settings)
    train, val = version.load("train"), version.load("val")
    if len(val.labels) == 0:
        raise ForgetflowError(f"dataset {version.name} has no validation split: calibration selects on validation data only", "set data.val_fraction > 0 in params.yaml and re-import the dataset")
    manifest = version.manifest.set_index("sample_id")
    subjects = manifest.loc[train.sample_ids, "subject_id"].astype(str).to_numpy()
    with tempfile.TemporaryDirectory(prefix="forgetflow-calibrate-") as scratch:
        model, payload = load_checkpoint(download_checkpoint(settings, alias="champion", dst=Path(scratch)))
    policy = unlearning_policy(params)
    started = time.time()
    result = calibrate(
        model, model.spec, params.train, train=train, val=val, subjects=subjects, eval_params=evaluation_params(params),
        stats=payload.get("layer_stats"), kinds=tuple(kinds or PROXY_KINDS), max_configs=max_configs, max_time_ratio=max_time_ratio,
        retain_sample_size=policy.retain_sample_size, seed=seed, reference_seed=evaluation_params(params).reference.seed,
        device=settings.resolved_device(), progress=progress, log=log,
    )
    calibration_id = time.strftime("cal-%Y%m%dT%H%M%SZ-", time.gmtime(started)) + uuid.uuid4().hex[:6]
    pinned = sorted(f"{kind}/{goal}" for kind, goals in policy.methods.items() for goal in goals)
    document = {
        "format": FORMAT,
        "calibration_id": calibration_id,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "seconds": round(result.seconds, 1),
        "champion_version": str(champion["version"]),
        "dataset": version.name,
        "data_md5": dvc_workspace(settings).md5(version.root),
        "recipe_hash": params.recipe_hash(),
        "seed": seed,
        "max_time_ratio": max_time_ratio,
        "ladders": result.ladders,
        "proxies": result.proxies,
        "notes": result.notes + ([f"params.yaml pins unlearning.methods for {', '.join(pinned)}: those ladders win over this calibration"] if pinned else []),
        "trials": [_json_safe(row) for row in result.table()],
    }
    path = calibration_path(settings)
    with tempfile.TemporaryDirectory(prefix="forgetflow-calibration-") as scratch:
        folder = Path(scratch)
        (folder / "calibration.json").write_text(json.dumps(document, indent=2, sort_keys=True))
        _write_table(result.table(), folder / "trials.csv")
        plot = plot_calibration(result, folder / "calibration.png")
        run_id = _log_run(settings, document, folder, plot)
    document["mlflow_run_id"] = run_id
    write_atomic(path, json.dumps(document, indent=2, sort_keys=True))
    return document


def _json_safe(row: dict) -> dict:
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in row.items()}


def _write_table(rows: list[dict], path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["proxy"])
        writer.writeheader()
        for row in rows:
            writer.writerow({k: json.dumps(v, sort_keys=True) if isinstance(v, dict) else v for k, v in row.items()})


def _log_run(settings: Settings, document: dict, folder: Path, plot: Path) -> str:
    from forgetflow.lineage import code_version
    from forgetflow.tracking import TAG_PREFIX, configure

    experiment_id = configure(settings)
    import mlflow

    tags = {
        f"{TAG_PREFIX}stage": "calibration",
        f"{TAG_PREFIX}calibration_id": document["calibration_id"],
        f"{TAG_PREFIX}champion_version": document["champion_version"],
        f"{TAG_PREFIX}data_md5": document["data_md5"],
        f"{TAG_PREFIX}recipe_hash": document["recipe_hash"],
        f"{TAG_PREFIX}code_version": code_version(),
    }
    with mlflow.start_run(experiment_id=experiment_id, run_name=document["calibration_id"], tags=tags) as run:
        mlflow.log_params({"seed": document["seed"], "max_time_ratio": document["max_time_ratio"], "proxies": ",".join(p["name"] for p in document["proxies"])})
        metrics = {"seconds": document["seconds"], "trials": len(document["trials"]), "trials_passed": sum(1 for t in document["trials"] if t["passed"])}
        for kind, goals in document["ladders"].items():
            for goal, rungs in goals.items():
                metrics[f"rungs.{kind}.{goal}"] = len(rungs)
        mlflow.log_metrics(metrics)
        mlflow.log_table({k: [json.dumps(row[k], sort_keys=True) if isinstance(row[k], dict) else row[k] for row in document["trials"]] for k in (document["trials"][0] if document["trials"] else {})}, artifact_file="calibration/trials.json")
        mlflow.log_artifact(str(folder / "calibration.json"), artifact_path="calibration")
        mlflow.log_artifact(str(folder / "trials.csv"), artifact_path="calibration")
        mlflow.log_artifact(str(plot), artifact_path="calibration")
    return run.info.run_id
