"""Weights of superseded versions: a model can memorise its training data, so the weights of a
version trained on data since erased are withdrawn from the artifact store (`unlearning.superseded`):

- `keep`: left where they are (the version only carries the `superseded_by_erasure` tag);
- `quarantine`: moved to `<workspace>/.forgetflow/quarantine/` (mode 0700: the workspace owner
  only), out of reach of MLflow's model URIs and of forgetflow (never loaded or promoted again);
- `delete`: removed; the version's metadata, tags and lineage stay registered.

The version's `forgetflow.weights` tag records the state; erasure verification re-checks it.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

from forgetflow.errors import ForgetflowError
from forgetflow.settings import Settings
from forgetflow.tracking import TAG_PREFIX

WEIGHTS_TAG = f"{TAG_PREFIX}weights"
LOCATION_TAG = f"{TAG_PREFIX}weights_location"
_RANK = {"kept": 0, "quarantined": 1, "deleted": 2}
_STATE_OF_POLICY = {"keep": "kept", "quarantine": "quarantined", "delete": "deleted"}


def refuse_withdrawn(tags: dict, version: str, action: str) -> None:
    """Raise when a version's weights were quarantined or deleted."""
    state = tags.get(WEIGHTS_TAG)
    if state in ("quarantined", "deleted"):
        raise ForgetflowError(
            f"version {version} cannot be {action}: its weights were {state} (trained on data since erased; superseded by erasure of {tags.get(f'{TAG_PREFIX}superseded_by_erasure', '?')})",
            "promote or load a version trained after the erasure (see `forgetflow model list`)",
        )


def quarantine_root(settings: Settings) -> Path:
    return settings.state_dir / "quarantine"


def _local_path(uri: str) -> Path | None:
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))  # MLflow percent-encodes file URIs (a space is %20)
    if parsed.scheme == "" or len(parsed.scheme) == 1:  # a plain path (or a Windows drive)
        return Path(uri)
    return None


def weights_location(client, name: str, version: str) -> tuple[str, str]:
    """(logged model ID, artifact URI) of a version's model: the pt2 model and its checkpoint."""
    import mlflow

    mv = client.get_model_version(name, version)
    model_id = mv.model_id or mv.source.removeprefix("models:/")
    return model_id, mlflow.get_logged_model(model_id).artifact_location.rstrip("/")


def apply_superseded_policy(settings: Settings, versions: list[str], *, keep: set[str]) -> dict[str, str]:
    """Bring each superseded version's weights to the policy's state (never back: a quarantined
    version is not restored by switching to `keep`). Returns version -> new state, for changes."""
    from forgetflow.audit_params import superseded_policy
    from forgetflow.deletion.registry import _client

    target = _STATE_OF_POLICY[superseded_policy(settings)]
    client = _client(settings)
    name = settings.registered_model_name
    changed = {}
    for version in versions:
        if version in keep:
            continue
        tags = client.get_model_version(name, version).tags
        current = tags.get(WEIGHTS_TAG, "kept")
        if _RANK.get(current, 0) >= _RANK[target]:
            continue
        model_id, uri = weights_location(client, name, version)
        destination = quarantine_root(settings) / f"v{version}-{model_id}"
        if target == "quarantined":
            _move_out(uri, destination)
            client.set_model_version_tag(name, version, LOCATION_TAG, str(destination.relative_to(settings.workspace)))
        else:
            _delete(uri)
            shutil.rmtree(destination, ignore_errors=True)
            client.set_model_version_tag(name, version, LOCATION_TAG, "deleted")
        client.set_model_version_tag(name, version, WEIGHTS_TAG, target)
        changed[version] = target
    return changed


def _move_out(uri: str, destination: Path) -> None:
    root = destination.parent
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    local = _local_path(uri)
    if local is not None:
        if local.exists():
            shutil.rmtree(destination, ignore_errors=True)
            shutil.move(str(local), str(destination))
        elif not destination.exists():
            logging.getLogger(__name__).warning("superseded weights to quarantine not found at %s (moved or deleted outside forgetflow)", local)
        return
    import mlflow
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    destination.mkdir(exist_ok=True)
    mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(destination))
    get_artifact_repository(uri).delete_artifacts()


def _delete(uri: str) -> None:
    local = _local_path(uri)
    if local is not None:
        shutil.rmtree(local, ignore_errors=True)
        return
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    get_artifact_repository(uri).delete_artifacts()


def check_superseded_weights(settings: Settings) -> list[str]:
    """Problems with withdrawn weights: a superseded version whose weights are still in the
    artifact store although the policy withdraws them, or a quarantine readable by others."""
    from forgetflow.audit_params import superseded_policy
    from forgetflow.deletion.registry import _client

    policy = superseded_policy(settings)
    client = _client(settings)
    name = settings.registered_model_name
    problems, any_quarantined = [], False
    for mv in client.search_model_versions(f"name='{name}'"):
        tags, version = mv.tags, str(mv.version)
        if f"{TAG_PREFIX}superseded_by_erasure" not in tags:
            continue
        state = tags.get(WEIGHTS_TAG, "kept")
        if policy != "keep" and _RANK.get(state, 0) < _RANK[_STATE_OF_POLICY[policy]]:
            problems.append(f"superseded v{version}: weights are {state}, but unlearning.superseded is {policy}")
        if state in ("quarantined", "deleted"):
            _, uri = weights_location(client, name, version)
            local = _local_path(uri)
            if local is not None and local.exists() and any(local.rglob("*")):
                problems.append(f"superseded v{version}: weights marked {state} are still in the artifact store ({uri})")
        any_quarantined = any_quarantined or state == "quarantined"
    root = quarantine_root(settings)
    if any_quarantined and root.exists() and root.stat().st_mode & 0o077:  # one line, not one per version
        problems.append(f"the quarantine folder {root.relative_to(settings.workspace)} is readable by others (mode {oct(root.stat().st_mode & 0o777)})")
    return problems
