"""Registry moves of a deletion batch: idempotent registration, promotion, superseded tags.

Aliases: `champion` (deployed) moves only on promotion; `candidate` marks the newest unlearned
model; `reference` the latest model retrained from scratch. A version is found again by its
`forgetflow.batch_id` and `forgetflow.role` tags, so a resumed batch never registers twice.
"""

from __future__ import annotations

from forgetflow.settings import Settings
from forgetflow.tracking import TAG_PREFIX, configure


def _client(settings: Settings):
    configure(settings)
    from mlflow import MlflowClient

    return MlflowClient()


def end_interrupted_runs(settings: Settings, batch_id: str) -> list[str]:
    """Mark KILLED the MLflow runs of this batch that are still RUNNING: a registration killed
    mid-way left them so, and nothing else would ever end them. Only called while the batch holds
    the workspace, so no live process is logging to them. Returns their run IDs."""
    client = _client(settings)
    experiment = client.get_experiment_by_name(settings.experiment_name)
    if experiment is None:
        return []
    query = f"tags.`{TAG_PREFIX}batch_id` = '{batch_id}' and attributes.status = 'RUNNING'"
    ended = []
    for run in client.search_runs([experiment.experiment_id], filter_string=query, max_results=1000):
        client.set_tag(run.info.run_id, f"{TAG_PREFIX}status", "interrupted")
        client.set_terminated(run.info.run_id, "KILLED")
        ended.append(run.info.run_id)
    return ended


def find_version(settings: Settings, batch_id: str, role: str) -> dict | None:
    client = _client(settings)
    name = settings.registered_model_name
    query = f"name='{name}' and tags.`{TAG_PREFIX}batch_id`='{batch_id}' and tags.`{TAG_PREFIX}role`='{role}'"
    found = client.search_model_versions(query)
    if not found:
        return None
    mv = max(found, key=lambda v: int(v.version))
    return {"name": mv.name, "version": str(mv.version), "run_id": mv.run_id, "aliases": version_aliases(settings).get(str(mv.version), []), "tags": dict(mv.tags)}


def version_aliases(settings: Settings) -> dict[str, list[str]]:
    """version -> its aliases. `search_model_versions` always returns `aliases=[]` (an MLflow
    limitation); the registered model carries the alias -> version map."""
    from mlflow.exceptions import MlflowException

    try:
        model = _client(settings).get_registered_model(settings.registered_model_name)
    except MlflowException:
        return {}
    out: dict[str, list[str]] = {}
    for alias, version in sorted((model.aliases or {}).items()):
        out.setdefault(str(version), []).append(alias)
    return out


def alias_version(settings: Settings, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(_client(settings).get_model_version_by_alias(settings.registered_model_name, alias).version)
    except MlflowException:
        return None


def set_alias(settings: Settings, alias: str, version: str) -> None:
    """Point `alias` at `version`; a version whose weights were quarantined or deleted (superseded
    by an erasure) can never become champion or candidate again."""
    client = _client(settings)
    if alias in ("champion", "candidate"):
        from forgetflow.deletion.superseded import refuse_withdrawn

        refuse_withdrawn(client.get_model_version(settings.registered_model_name, str(version)).tags, str(version), f"made {alias}")
    client.set_registered_model_alias(settings.registered_model_name, alias, version)


def tag_version(settings: Settings, version: str, tags: dict) -> None:
    client = _client(settings)
    for key, value in tags.items():
        client.set_model_version_tag(settings.registered_model_name, version, f"{TAG_PREFIX}{key}", str(value))


def mark_superseded(settings: Settings, *, before_version: int, batch_id: str, keep: set[str]) -> list[str]:
    """Tag every older version (trained on data now erased) as superseded by this batch's erasure,
    then apply `unlearning.superseded` (keep | quarantine | delete) to the weights of every superseded
    version (deletion/superseded.py). Their metadata and lineage stay registered for the audit
    trail. The deployed champion is never touched (a batch whose gate kept it still serves it).
    """
    from forgetflow.deletion.superseded import apply_superseded_policy

    client = _client(settings)
    name = settings.registered_model_name
    keep = {str(v) for v in keep} | {v for v in [alias_version(settings, "champion")] if v}
    tagged, superseded = [], []
    for mv in client.search_model_versions(f"name='{name}'"):
        version = str(mv.version)
        if int(version) >= before_version or version in keep:
            continue
        superseded.append(version)
        if f"{TAG_PREFIX}superseded_by_erasure" in mv.tags:
            continue
        client.set_model_version_tag(name, version, f"{TAG_PREFIX}superseded_by_erasure", batch_id)
        tagged.append(version)
    apply_superseded_policy(settings, superseded, keep=keep)
    return tagged


def log_rung_runs(settings: Settings, parent_run_id: str, batch_id: str, runs: list[dict]) -> list[str]:
    """One MLflow child run per rung of each group's method ladder, under the batch's candidate
    run: the method, its full config, its wall time, the gate's verdict and reason, and whether it
    was the promoted rung. Found again by tags, so a resumed batch never logs a rung twice."""
    import math

    from mlflow.entities import Metric, Param

    client = _client(settings)
    parent = client.get_run(parent_run_id)
    existing = {  # a rung run killed half-logged (ended KILLED on resume) is logged again
        r.data.tags.get(f"{TAG_PREFIX}rung_id")
        for r in client.search_runs([parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'", max_results=1000)
        if r.info.status != "KILLED"
    }
    logged = []
    for group_index, run in enumerate(runs):
        for outcome in run.get("outcomes") or []:
            rung_id = f"g{group_index}-a{outcome['attempt']}-r{outcome['index']}"
            if rung_id in existing:
                continue
            promoted = run.get("promoted_rung") == outcome["index"] and outcome["passed"]
            tags = {
                "mlflow.parentRunId": parent_run_id,
                "mlflow.runName": f"{batch_id}-{rung_id}-{outcome['method']}",
                f"{TAG_PREFIX}batch_id": batch_id,
                f"{TAG_PREFIX}rung_id": rung_id,
                f"{TAG_PREFIX}stage": "ladder-rung",
                f"{TAG_PREFIX}group": f"{run['category']}/{run['goal']}",
                f"{TAG_PREFIX}gate_passed": str(bool(outcome["passed"])),
                f"{TAG_PREFIX}gate_reason": str(outcome["reason"])[:5000],
                f"{TAG_PREFIX}promoted": str(bool(promoted)),
                f"{TAG_PREFIX}ladder_source": str(run.get("ladder_source", "")),
            }
            child = client.create_run(parent.info.experiment_id, tags=tags, run_name=tags["mlflow.runName"])
            now = int(child.info.start_time)
            params = [Param("method", outcome["method"]), Param("rung", str(outcome["index"] + 1)), Param("attempt", str(outcome["attempt"]))]
            params += [Param(f"config.{k}", str(v)[:500]) for k, v in sorted((outcome.get("config") or {}).items())]
            metrics = [Metric("seconds", float(outcome["seconds"]), now, 0), Metric("gate_passed", 1.0 if outcome["passed"] else 0.0, now, 0)]
            metrics += [Metric(f"gate.{k}", float(v), now, 0) for k, v in sorted((outcome.get("metrics") or {}).items()) if isinstance(v, (int, float)) and math.isfinite(v)]
            client.log_batch(child.info.run_id, metrics=metrics, params=params)
            client.set_terminated(child.info.run_id, "FINISHED")
            logged.append(child.info.run_id)
    return logged
