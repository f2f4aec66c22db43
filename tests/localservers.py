"""Real servers on localhost for tests: `prefect server start`, `mlflow server`, `forgetflow serve`,
`prefect worker start`. Each runs as a subprocess in its own session and is killed with its children."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout_s: float, what: str, interval_s: float = 0.5, process: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{what}: the process exited with {process.returncode}\n{_tail(log)}")
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}\n{_tail(log)}")


def flow_run_processes(pid: int) -> list[int]:
    """Children of `pid` that run a flow: Prefect's runner starts each served run as a
    multiprocessing spawn child. Linux /proc only (what the tests run on)."""
    children = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except OSError:  # the thread or process ended meanwhile
            continue
    running = []
    for child in children:
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                running.append(child)
        except OSError:
            continue
    return running


def _tail(log: Path | None, lines: int = 40) -> str:
    if log is None or not log.exists():
        return ""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def background(command: list[str], env: dict, log: Path, cwd: Path | None = None):
    """Run `command` until the block ends; SIGTERM, then SIGKILL, to its whole process group."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=cwd)
    try:
        yield process
    finally:
        stop(process)


def stop(process: subprocess.Popen, timeout_s: float = 20.0) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


_prefect_servers: dict[str, subprocess.Popen] = {}  # API URL -> its `prefect server start` process


@contextmanager
def _launched_prefect_server(home: Path, env: dict):
    """`prefect server start` on a free port, SQLite under `home`, not yet answering; yields
    (process, API URL, log)."""
    port = free_port()
    server_env = {**env, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "false"}
    server_env.pop("PREFECT_API_URL", None)
    log = home / "server.log"
    with background([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"], server_env, log) as process:
        api_url = f"http://127.0.0.1:{port}/api"
        _prefect_servers[api_url] = process
        try:
            yield process, api_url, log
        finally:
            del _prefect_servers[api_url]


def _wait_prefect_healthy(process: subprocess.Popen, api_url: str, log: Path) -> str:
    wait_until(lambda: _healthy(f"{api_url}/health"), 180, "prefect server", process=process, log=log)
    return api_url


@contextmanager
def _launched_mlflow_server(root: Path, env: dict):
    """`mlflow server` (SQLite backend, served artifacts) on a free port, not yet answering; yields
    (process, URL, log)."""
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    command = [
        str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", (root / "artifacts").as_uri(),
    ]
    log = root / "server.log"
    with background(command, env, log) as process:
        yield process, f"http://127.0.0.1:{port}", log


def _wait_mlflow_healthy(process: subprocess.Popen, url: str, log: Path) -> str:
    wait_until(lambda: _healthy(f"{url}/health"), 120, "mlflow server", process=process, log=log)
    return url


@contextmanager
def prefect_and_mlflow_servers(root: Path, env: dict):
    """Both servers, started side by side (each takes 20-35 s to answer on 2 cores), Prefect's
    under `root/prefect` and MLflow's under `root/mlflow-server`; yields (API URL, tracking URI)."""
    with _launched_prefect_server(root / "prefect", env) as prefect, _launched_mlflow_server(root / "mlflow-server", env) as mlflow:
        yield _wait_prefect_healthy(*prefect), _wait_mlflow_healthy(*mlflow)


@contextmanager
def frozen(api_url: str):
    """The Prefect server of `api_url` stopped (SIGSTOP) for the block: requests wait unanswered in
    its socket, as on a server too busy to answer, and are served once the block ends."""
    group = _prefect_servers[api_url].pid  # the server and its children share one process group
    os.killpg(group, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(group, signal.SIGCONT)
