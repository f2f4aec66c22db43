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


def find_version(settings: Settings, batch_id: str, role: str) -> dict | None:
    client = _client(settings)
    name = settings.registered_model_name
    query = f"name='{name}' and tags.`{TAG_PREFIX}batch_id`='{batch_id}' and tags.`{TAG_PREFIX}role`='{role}'"
    found = client.search_model_versions(query)
    if not found:
        return None
    mv = max(found, key=lambda v: int(v.version))
    return {"name": mv.name, "version": str(mv.version), "run_id": mv.run_id, "aliases": list(mv.aliases), "tags": dict(mv.tags)}


def alias_version(settings: Settings, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(_client(settings).get_model_version_by_alias(settings.registered_model_name, alias).version)
    except MlflowException:
        return None


def set_alias(settings: Settings, alias: str, version: str) -> None:
    _client(settings).set_registered_model_alias(settings.registered_model_name, alias, version)


def tag_version(settings: Settings, version: str, tags: dict) -> None:
    client = _client(settings)
    for key, value in tags.items():
        client.set_model_version_tag(settings.registered_model_name, version, f"{TAG_PREFIX}{key}", str(value))


def mark_superseded(settings: Settings, *, before_version: int, batch_id: str, keep: set[str]) -> list[str]:
    """Tag every older version (trained on data now erased) as superseded by this batch's erasure.

    They stay registered for the audit trail; where policy demands, an operator deletes them
    (MlflowClient.delete_model_version, then `mlflow gc`).
    """
    client = _client(settings)
    name = settings.registered_model_name
    tagged = []
    for mv in client.search_model_versions(f"name='{name}'"):
        version = str(mv.version)
        if int(version) >= before_version or version in keep:
            continue
        if f"{TAG_PREFIX}superseded_by_erasure" in mv.tags:
            continue
        client.set_model_version_tag(name, version, f"{TAG_PREFIX}superseded_by_erasure", batch_id)
        tagged.append(version)
    return tagged
