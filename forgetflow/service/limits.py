"""Prefect global concurrency limits: one job per compute device, one writer per workspace.

- `device` limit (1 slot): unlearning and the reference retrain hold it, so one GPU never runs
  two of them (the deletion flow takes it once for both when the reference is retrained
  locally). Named after the host and device, so two machines with `cuda:0` do not block each
  other; FORGETFLOW_DEVICE_LIMIT overrides the name (e.g. one name per physical GPU in a pool).
- `workspace` limit (1 slot): a deletion flow holds it for the whole batch. A second run (a trigger
  while a batch runs) waits for the slot instead of failing, so it is queued, not lost, and the
  requests that arrived meanwhile join its batch.

Both are taken with `strict=True`: a missing limit is an error, never a silently unlimited run, and
`ensure_limits` creates them (idempotently) at service start-up and at the start of every flow.
"""

from __future__ import annotations

import socket
from contextlib import contextmanager
from contextvars import ContextVar

from forgetflow.service.naming import slug, workspace_id
from forgetflow.settings import Settings

LEASE_S = 300  # Prefect renews the lease while the holder lives; a dead holder frees the slot after this


def device_limit_name(settings: Settings) -> str:
    if settings.device_limit:
        return settings.device_limit
    return f"forgetflow-device-{slug(socket.gethostname())}-{slug(settings.resolved_device())}"


def workspace_limit_name(settings: Settings) -> str:
    return f"forgetflow-workspace-{workspace_id(settings)}"


def ensure_limits(settings: Settings) -> list[str]:
    """Create the device and workspace limits (1 slot each) where missing; returns their names."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    names = [device_limit_name(settings), workspace_limit_name(settings)]
    with get_client(sync_client=True) as client:
        for name in names:
            try:
                client.read_global_concurrency_limit_by_name(name)
            except ObjectNotFound:
                try:
                    client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
                except ObjectAlreadyExists:  # another process created it first
                    pass
    return names


# Device slots this context already holds: a task inside a flow that holds the slot does not ask
# again. Each acquisition is a write on the Prefect server, and on SQLite one in two collides with
# the flow's own event writes and costs a 2 s retry (docs/scale-out.md). Threads start with an
# empty context, so jobs in other threads or processes still queue for the slot.
_held_devices: ContextVar[frozenset[str]] = ContextVar("forgetflow_held_devices", default=frozenset())


@contextmanager
def device_slot(settings: Settings):
    """Hold the device's single slot (waits for it) for one unlearning or retraining job; a no-op
    where this context already holds it."""
    name = device_limit_name(settings)
    held = _held_devices.get()
    if name in held:
        yield
        return
    from prefect.concurrency.sync import concurrency

    with concurrency(name, occupy=1, strict=True, lease_duration=LEASE_S):
        token = _held_devices.set(held | {name})
        try:
            yield
        finally:
            _held_devices.reset(token)


@contextmanager
def workspace_slot(settings: Settings):
    """Hold the workspace's single writer slot (waits for it: a second trigger queues)."""
    from prefect.concurrency.sync import concurrency

    with concurrency(workspace_limit_name(settings), occupy=1, strict=True, lease_duration=LEASE_S):
        yield
