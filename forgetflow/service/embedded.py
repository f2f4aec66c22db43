"""The Prefect API behind one command (`process`, `bootstrap`, `demo`, `calibrate`).

PREFECT_API_URL wins; else a running `forgetflow serve` of the workspace is used; else the command
starts a server of its own for as long as it runs: Prefect's ephemeral API app (SQLite under
`.forgetflow/prefect`, no UI, no scheduler), as Prefect itself would start without an API URL, but

- with its concurrency leases in files (`<PREFECT_HOME>/concurrency_leases`): Prefect's own
  temporary server keeps them in memory, so after a SIGKILL the next server could not tell that the
  killed run's slot is free, and the workspace stayed locked for good (slots.py frees it now);
- stopped with the command, SIGKILL of the command included (`die_with_parent`); a pid file under
  `<PREFECT_HOME>/servers/` lets the next command stop a server left over where that is not
  available.

Call `connect` before Prefect is imported: Prefect reads PREFECT_API_URL once, at import.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from forgetflow.service.server import ServerError, die_with_parent, healthy, lease_environment, pid_alive, prefect_home, read_service_file
from forgetflow.settings import Settings

APP = "prefect.server.api.server:create_app"
STOP_TIMEOUT_S = 10.0


def connect(settings: Settings) -> str | None:
    """Point this process at a Prefect API (see the module docstring); returns its URL (None:
    Prefect, already loaded without one, starts its own temporary server)."""
    from forgetflow.service.slots import LEASES_ENV

    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    if "prefect.settings" in sys.modules:  # Prefect is loaded (an in-process caller): it keeps its own API
        from prefect.settings import get_current_settings

        return get_current_settings().api.url
    info = read_service_file(settings) or {}
    if info.get("api_url") and pid_alive(info.get("serve_pid")) and healthy(info["api_url"]):
        os.environ["PREFECT_API_URL"] = info["api_url"]
        if info.get("lease_dir"):
            os.environ[LEASES_ENV] = info["lease_dir"]
        return info["api_url"]
    return start(settings)


def servers_dir(settings: Settings) -> Path:
    return prefect_home(settings) / "servers"


def start(settings: Settings) -> str:
    """Start this command's own server and stop it at exit; returns its API URL."""
    folder = servers_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    stop_leftovers(settings)
    env = {**os.environ, **settings.prefect_environment()}
    env.pop("PREFECT_API_URL", None)
    env.update({"PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1", "PREFECT_UI_ENABLED": "0"})
    leases = lease_environment(settings, env)
    timeout_s = float(env.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS") or 90)
    log_path = folder / "server.log"
    for _ in range(3):  # a port taken between choosing it and binding it: try another
        port = _free_port()
        command = [sys.executable, "-m", "uvicorn", "--factory", APP, "--host", "127.0.0.1", "--port", str(port), "--log-level", "error", "--lifespan", "on"]
        with open(log_path, "ab") as log:
            log.write(f"--- {datetime.now(timezone.utc).isoformat()} pid {os.getpid()} port {port}\n".encode())
            log.flush()
            process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent())
        pid_file = folder / f"{process.pid}.json"
        pid_file.write_text(json.dumps({"pid": process.pid, "port": port, "parent_pid": os.getpid(), "started_at": datetime.now(timezone.utc).isoformat()}))
        atexit.register(_stop, process, pid_file)
        api_url = f"http://127.0.0.1:{port}/api"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and process.poll() is None:
            if healthy(api_url, timeout_s=1.0):
                os.environ["PREFECT_API_URL"] = api_url
                os.environ.update(leases)
                return api_url
            time.sleep(0.2)
        exited = process.poll() is not None
        _stop(process, pid_file)
        if not exited:
            raise ServerError(f"the Prefect server for {settings.workspace} did not answer within {timeout_s:.0f} s", f"see its log: {log_path}; or set PREFECT_API_URL to a running server")
    raise ServerError(f"the Prefect server for {settings.workspace} exited while starting", f"see its log: {log_path}")


def stop_leftovers(settings: Settings) -> list[int]:
    """Stop servers whose command died without stopping them (where the kernel could not)."""
    stopped = []
    for pid_file in servers_dir(settings).glob("*.json"):
        try:
            info = json.loads(pid_file.read_text())
        except (OSError, ValueError):
            continue
        if pid_alive(info.get("parent_pid")):
            continue
        pid = info.get("pid")
        if pid_alive(pid) and _is_prefect_server(pid):
            _terminate(pid)
            stopped.append(pid)
        pid_file.unlink(missing_ok=True)
    return stopped


def _is_prefect_server(pid: int) -> bool:
    """Only ever stop a Prefect API server (the PID may have been reused since)."""
    try:
        return APP.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return sys.platform != "linux"  # no /proc to check: trust the pid file


def _terminate(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.1)
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _stop(process: subprocess.Popen, pid_file: Path) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    pid_file.unlink(missing_ok=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
