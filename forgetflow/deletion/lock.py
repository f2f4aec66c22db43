"""One writer per workspace: a second flow waits (bounded) or stops with a clear message."""

from __future__ import annotations

import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from forgetflow.errors import ForgetflowError
from forgetflow.settings import Settings


class WorkspaceBusyError(ForgetflowError):
    """Another process holds the workspace lock."""


def lock_path(settings: Settings) -> Path:
    return settings.state_dir / "workspace.lock"


def holder(settings: Settings) -> dict | None:
    """Who holds (or last held) the lock: pid, host, what, since."""
    info = lock_path(settings).with_suffix(".holder.json")
    try:
        return json.loads(info.read_text())
    except (OSError, ValueError):
        return None


@contextmanager
def workspace_lock(settings: Settings, *, purpose: str, wait_s: float = 0.0):
    """Hold the workspace's write lock; the OS releases it if the process dies (crash-safe)."""
    path = lock_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=wait_s)
    except Timeout:
        current = holder(settings) or {}
        raise WorkspaceBusyError(
            f"workspace {settings.workspace} is busy: {current.get('purpose', 'another forgetflow process')} (pid {current.get('pid', '?')} on {current.get('host', '?')}, since {current.get('since', '?')})",
            "wait for it to finish; queued requests join the next batch (or pass a longer --wait)",
        ) from None
    info = path.with_suffix(".holder.json")
    info.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "purpose": purpose, "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}))
    try:
        yield
    finally:
        info.unlink(missing_ok=True)
        lock.release()
