"""The Prefect server behind `forgetflow serve`: use the one the user configured, or start
`prefect server start` (SQLite under the workspace) and stop it again on exit.

A served workspace also writes `.forgetflow/service.json` (API URL, process IDs, deployments), so
intake in another process knows where to announce requests and `forgetflow status` what to ask.

Every server forgetflow starts (here, and the per-command one in `embedded.py`) keeps its
concurrency leases in files under its PREFECT_HOME, so a restarted server still knows the lease of
a holder that died, and dies with the process that started it, SIGKILL included.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from forgetflow.errors import ForgetflowError
from forgetflow.settings import Settings

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4200
STARTUP_TIMEOUT_S = 180.0  # the first start migrates a fresh database (slow on a 2-core machine)
# Prefect's file-backed lease store (the default keeps leases in the server's memory only).
LEASE_STORAGE = "prefect.server.concurrency.lease_storage.filesystem"
_PR_SET_PDEATHSIG = 1


class ServerError(ForgetflowError):
    """The Prefect server cannot be started or reached."""


def service_file(settings: Settings) -> Path:
    return settings.state_dir / "service.json"


def read_service_file(settings: Settings) -> dict | None:
    try:
        return json.loads(service_file(settings).read_text())
    except (OSError, ValueError):
        return None


def write_service_file(settings: Settings, info: dict) -> None:
    from forgetflow.workspace import write_atomic

    service_file(settings).parent.mkdir(parents=True, exist_ok=True)
    write_atomic(service_file(settings), json.dumps(info, indent=2))


def clear_service_file(settings: Settings) -> None:
    service_file(settings).unlink(missing_ok=True)


def known_api_url(settings: Settings) -> str | None:
    """PREFECT_API_URL from the environment, else the API of a running `forgetflow serve`."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    info = read_service_file(settings)
    if info and info.get("api_url") and pid_alive(info.get("serve_pid")):
        return info["api_url"]
    return None


def pid_alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def healthy(api_url: str, timeout_s: float = 2.0) -> bool:
    import httpx

    try:
        return httpx.get(f"{api_url.rstrip('/')}/health", timeout=timeout_s).status_code == 200
    except httpx.HTTPError:
        return False


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def prefect_home(settings: Settings) -> Path:
    return Path(os.environ.get("PREFECT_HOME") or settings.prefect_environment().get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()


def lease_environment(settings: Settings, env: dict[str, str]) -> dict[str, str]:
    """Server settings for file-backed leases (unless the user chose a store), and the folder they
    go to under FORGETFLOW_PREFECT_LEASES for the processes that use the server (slots.py)."""
    from forgetflow.service.slots import LEASES_ENV

    env.setdefault("PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE", LEASE_STORAGE)
    if env["PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE"] != LEASE_STORAGE:
        return {}
    return {LEASES_ENV: str(Path(env.get("PREFECT_HOME") or prefect_home(settings)) / "concurrency_leases")}


def die_with_parent():
    """A `preexec_fn` that has the kernel send SIGTERM to the child when this process dies, SIGKILL
    included (Linux `PR_SET_PDEATHSIG`; elsewhere a no-op, and the pid file of an embedded server
    lets the next command stop a leftover). The signal follows the *thread* that started the child:
    call Popen from the main thread. `prctl` is looked up here, in the parent: the child may only
    call it (an import after fork can deadlock)."""
    parent = os.getpid()
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl: nobody would stop this child
            os._exit(1)

    return preexec


@dataclass
class LocalServer:
    """A `prefect server start` this process started (or found running on the port)."""

    api_url: str
    process: subprocess.Popen | None  # None: an already-running server was reused
    log_path: Path | None = None

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)  # the server runs uvicorn children
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def server_environment(settings: Settings, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> dict[str, str]:
    env = dict(os.environ)
    env.update(settings.prefect_environment())
    env.pop("PREFECT_API_URL", None)  # the server itself must not point at another API
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.setdefault("PREFECT_UI_ENABLED", "true")
    # The UI asks the API at PREFECT_UI_API_URL, by default made from these two: without them it
    # would call port 4200 whatever --port says (a user's PREFECT_UI_API_URL still wins).
    env.update(PREFECT_SERVER_API_HOST=host, PREFECT_SERVER_API_PORT=str(port))
    lease_environment(settings, env)
    return env


def start_local_server(settings: Settings, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, timeout_s: float = STARTUP_TIMEOUT_S) -> LocalServer:
    """Start `prefect server start` on host:port with its SQLite database under the workspace."""
    api_url = f"http://{host}:{port}/api"
    if port_in_use(host, port):
        if healthy(api_url):
            return LocalServer(api_url, None)
        raise ServerError(f"port {port} on {host} is taken by something that is not a Prefect server", "pick another port with --port, or stop the program on it")
    env = server_environment(settings, host=host, port=port)
    Path(env["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
    log_path = Path(env["PREFECT_HOME"]) / "server.log"
    prefect = Path(sys.executable).with_name("prefect")
    command = [str(prefect) if prefect.exists() else "prefect", "server", "start", "--host", host, "--port", str(port), "--analytics-off"]
    with open(log_path, "ab") as log:
        log.write(f"\n--- {datetime.now(timezone.utc).isoformat()} {' '.join(command)}\n".encode())
        log.flush()
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent())
    server = LocalServer(api_url, process, log_path)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerError(f"prefect server exited with code {process.returncode} while starting", f"see its log: {log_path}")
        if healthy(api_url):
            return server
        time.sleep(0.5)
    server.stop()
    raise ServerError(f"prefect server did not answer on {api_url} within {timeout_s:.0f} s", f"see its log: {log_path}")


def wait_healthy(api_url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if healthy(api_url):
            return
        time.sleep(0.5)
    raise ServerError(f"no Prefect server answers on {api_url}", "start one (`forgetflow serve` starts one for you when PREFECT_API_URL is unset) or fix PREFECT_API_URL")
