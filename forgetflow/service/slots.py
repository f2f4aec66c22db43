"""Who holds which concurrency slot, so that a slot whose holder died is freed at once.

Prefect frees the slot of a dead holder when its lease expires, but only on a server that still
knows the lease and runs the lease repossessor. The temporary server a command starts does
neither: it runs no repossessor, and Prefect's default lease store lives in the server's memory,
which dies with it. So forgetflow keeps its own record, and the servers it starts keep their
leases in files (`<PREFECT_HOME>/concurrency_leases`, see `server.LEASE_STORAGE`).

- Every slot forgetflow takes is recorded in `.forgetflow/slots/<lease id>.json` (limit, lease ID,
  PID, host, the process's start time, since when) from the moment it is granted until it is
  released.
- A process refused a slot first frees what is stale (`free_stale`): the slots of recorded holders
  that are dead on this host (released by lease: the server ends the lease, so a slot is never
  freed twice), and, where the server keeps its leases in a folder forgetflow knows
  (FORGETFLOW_PREFECT_LEASES), slots whose lease expired, and slots the limit counts without any
  lease, seen twice a few seconds apart and with no live holder recorded (a server killed between
  counting a slot and writing its lease, or leases lost by an older version's in-memory store).

A holder on another host is never judged dead from here; its server's repossessor frees its slot
once the lease expires.
"""

from __future__ import annotations

import json
import os
import socket
import time
from datetime import datetime, timezone
from pathlib import Path

from forgetflow.settings import Settings

LEASES_ENV = "FORGETFLOW_PREFECT_LEASES"  # set where the API server keeps its leases in this folder
PHANTOM_RECHECK_S = 2.0  # a slot counted without a lease must still be so after this long


def slots_dir(settings: Settings) -> Path:
    return settings.state_dir / "slots"


def process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused PID apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def record(settings: Settings, name: str, lease_id: str | None, purpose: str = "") -> Path:
    """Note that this process holds a slot of `name` under `lease_id`."""
    from forgetflow.workspace import write_atomic

    pid = os.getpid()
    info = {
        "limit": name, "lease_id": lease_id, "pid": pid, "host": socket.gethostname(), "process_start": process_start(pid),
        "purpose": purpose, "since": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    path = slots_dir(settings) / f"{lease_id or f'{pid}-{time.monotonic_ns()}'}.json"
    write_atomic(path, json.dumps(info))
    return path


def holders(settings: Settings, name: str | None = None) -> list[dict]:
    """The recorded holders (of limit `name`), each with `path` and `alive` (None: another host)."""
    folder = slots_dir(settings)
    found = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if name is None or info.get("limit") == name:
            found.append({**info, "path": str(path), "alive": holder_alive(info)})
    return found


def holder_alive(info: dict) -> bool | None:
    """True or False for a holder on this host; None for one on another host (cannot tell)."""
    if info.get("host") != socket.gethostname():
        return None
    from forgetflow.service.server import pid_alive

    pid = info.get("pid")
    if not pid_alive(pid):
        return False
    started = process_start(pid)
    return not (info.get("process_start") and started and started != info["process_start"])


def free_stale(settings: Settings, name: str) -> int:
    """Free the slots of `name` (and of other limits the same dead holders held) that nobody
    holds any more; returns how many were freed. Needs PREFECT_API_URL (a Prefect client)."""
    from filelock import FileLock
    from prefect.client.orchestration import get_client

    folder = slots_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    freed = 0
    # One sweeper at a time: two releasing the same expired lease could free a slot twice.
    with FileLock(str(folder / ".sweep.lock")), get_client(sync_client=True) as client:
        for holder in holders(settings):
            if holder["alive"] is not False:
                continue
            if holder.get("lease_id"):
                try:
                    client.release_concurrency_slots_with_lease(holder["lease_id"])  # a no-op for a lease the server has ended
                except Exception:  # the server did not answer: keep the record and try again next time
                    continue
                freed += holder["limit"] == name
            Path(holder["path"]).unlink(missing_ok=True)
        if lease_dir := local_lease_dir():
            freed += _free_unleased(settings, client, name, lease_dir)
    return freed


def local_lease_dir() -> Path | None:
    """The folder of the API server's leases, when forgetflow started that server (LEASES_ENV) and
    this process talks to it (a process that loaded Prefect before PREFECT_API_URL was set talks to
    another server, whose leases are elsewhere)."""
    from prefect.settings import get_current_settings

    folder = os.environ.get(LEASES_ENV)
    if not folder or os.environ.get("PREFECT_API_URL") != get_current_settings().api.url:
        return None
    return Path(folder)


def _free_unleased(settings: Settings, client, name: str, lease_dir: Path) -> int:
    """Slots of `name` whose lease expired, or that have no lease at all (see the module docstring)."""
    from prefect.exceptions import ObjectNotFound

    if any(h["alive"] is not False for h in holders(settings, name)):
        return 0  # a holder lives (or may, on another host): the slot is its, not ours to judge
    try:
        limit = client.read_global_concurrency_limit_by_name(name)
    except ObjectNotFound:
        return 0
    freed = 0
    live = 0
    for lease in _leases(lease_dir, str(limit.id)):
        if lease["expiration"] <= datetime.now(timezone.utc):
            client.release_concurrency_slots_with_lease(lease["id"])  # what a repossessor would do
            freed += 1
        else:
            live += lease["slots"]
    phantom = client.read_global_concurrency_limit_by_name(name).active_slots - live
    if phantom <= 0:
        return freed
    time.sleep(PHANTOM_RECHECK_S)  # a slot being granted right now gets its lease within milliseconds
    live = sum(lease["slots"] for lease in _leases(lease_dir, str(limit.id)) if lease["expiration"] > datetime.now(timezone.utc))
    phantom = min(phantom, client.read_global_concurrency_limit_by_name(name).active_slots - live)
    if phantom > 0:
        client.release_concurrency_slots(names=[name], slots=phantom, occupancy_seconds=PHANTOM_RECHECK_S)
        freed += phantom
    return freed


def _leases(lease_dir: Path, limit_id: str) -> list[dict]:
    """The leases in Prefect's filesystem lease store that hold a slot of the limit. A lease file
    that cannot be read counts as live for a minute (never free a slot on a guess)."""
    from datetime import timedelta

    found = []
    for path in lease_dir.glob("*.json") if lease_dir.is_dir() else []:
        if path.name == "expirations.json":
            continue
        try:
            data = json.loads(path.read_text())
            if limit_id not in data["resource_ids"]:
                continue
            found.append({"id": data["id"], "expiration": datetime.fromisoformat(data["expiration"]), "slots": int((data.get("metadata") or {}).get("slots", 1))})
        except FileNotFoundError:  # released meanwhile
            continue
        except (OSError, ValueError, KeyError, TypeError):
            found.append({"id": path.stem, "expiration": datetime.now(timezone.utc) + timedelta(seconds=60), "slots": 1})
    return found
