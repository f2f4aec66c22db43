"""The CLI under SIGKILL (issue 23): `forgetflow process` killed after versioning, inside the method
ladder and inside registration, each time with real Prefect flow runs on the server the command
starts; then one plain `forgetflow process` finishes the batch exactly once, on its own.

Each killed run's workspace slot is freed by the next run at once (never "waiting for concurrency
slot"), no Prefect server outlives the command that started it, MLflow runs the killed
registration left open end KILLED, and the closed batch's state keeps no sample IDs. `--wait 0`
stops at once while a live run holds the workspace. The requests carry hostile text, printed
literally by every command that shows it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from forgetflow.data.store import DatasetVersion
from forgetflow.registration import bootstrap_workspace
from forgetflow.requests.intake import inbox_dir, open_ledger, process_inbox, submit
from forgetflow.settings import load_settings

from conftest import make_workspace
from test_deletion_flow import lenient_evaluation

pytestmark = [pytest.mark.flow, pytest.mark.timeout(900)]

BIN = Path(sys.executable).parent
# After versioning, after a rung of the method ladder, inside MLflow registration (run open).
CRASH_POINTS = ["versioned", "ladder-rung", "register-run"]
HOSTILE = "[/bold]mallory"
SUBJECT = "subject-not-in-the-dataset-4711"
WAITING = "waiting for concurrency slot"
SERVER_APP = b"prefect.server.api.server"


def cli_env(ws: Path, crash: str | None = None) -> dict:
    """As a user's shell would have it: no Prefect API configured, Prefect's files in the workspace."""
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "FORGETFLOW_CRASH_AFTER", "FORGETFLOW_PREFECT_LEASES")}
    env.update(PREFECT_HOME=str(ws / ".forgetflow" / "prefect"), OMP_NUM_THREADS="1")
    if crash:
        env["FORGETFLOW_CRASH_AFTER"] = crash
    return env


def cli(ws: Path, *args: str, crash: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "forgetflow"), *args, "-w", str(ws)], env=cli_env(ws, crash), capture_output=True, text=True, timeout=600)


def prefect_servers(prefect_home: Path) -> list[int]:
    """PIDs of Prefect API servers running on this PREFECT_HOME (Linux /proc)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if SERVER_APP in (proc / "cmdline").read_bytes() and f"PREFECT_HOME={prefect_home}".encode() in (proc / "environ").read_bytes().split(b"\0"):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def servers_left(prefect_home: Path, grace_s: float = 15.0) -> list[int]:
    """The servers still running after a grace period (a server stopping on SIGTERM takes a moment)."""
    deadline = time.monotonic() + grace_s
    while (left := prefect_servers(prefect_home)) and time.monotonic() < deadline:
        time.sleep(0.25)
    return left


@pytest.fixture(scope="module")
def crashed(tmp_path_factory):
    ws = make_workspace(tmp_path_factory.mktemp("cli-crash") / "ws", evaluation=lenient_evaluation())
    settings = load_settings(ws)
    bootstrap_workspace(settings, "digits")
    manifest = DatasetVersion(settings.data_dir / "digits").manifest
    train = manifest[manifest.split == "train"].sample_id.astype(int).tolist()
    sample_request = submit(settings, {"kind": "samples", "ids": train[:8], "reason": "[red]GDPR[/", "requested_by": HOSTILE}, announce="none").request_id
    # A subject request that validation rejects: its processed inbox copy names the subject in clear text.
    inbox_dir(settings).mkdir(parents=True, exist_ok=True)
    (inbox_dir(settings) / "subject.json").write_text(json.dumps({"request_id": "unknown-subject", "kind": "subjects", "ids": [SUBJECT], "reason": "r", "requested_by": "x"}))
    assert process_inbox(settings).processed
    home = ws / ".forgetflow" / "prefect"
    crashes, left = [], []
    for point in CRASH_POINTS:
        crashes.append(cli(ws, "process", crash=point))
        left.append(servers_left(home))
    started = time.monotonic()
    final = cli(ws, "process")
    final_s = time.monotonic() - started
    left.append(servers_left(home))
    return {"ws": ws, "settings": settings, "sample": sample_request, "crashes": crashes, "final": final, "final_s": final_s, "left": left, "home": home}


def test_each_kill_was_a_sigkill_and_one_plain_run_finished_the_batch(crashed):
    codes = [run.returncode for run in crashed["crashes"]]
    assert codes == [-signal.SIGKILL] * len(CRASH_POINTS), [run.stderr[-2000:] for run in crashed["crashes"]]
    final = crashed["final"]
    assert final.returncode == 0, final.stdout[-3000:] + final.stderr[-3000:]
    assert "Deletion batch" in final.stdout


def test_a_killed_runs_slot_is_freed_at_once_not_after_a_lease(crashed):
    # Every run after a kill got the workspace slot without queueing behind the dead holder.
    for run in crashed["crashes"][1:] + [crashed["final"]]:
        assert WAITING not in run.stdout + run.stderr
    settings = crashed["settings"]
    assert not list((settings.state_dir / "slots").glob("*.json")), "a slot record outlived its holder"
    assert not [p for p in (crashed["home"] / "concurrency_leases").glob("*.json") if p.name != "expirations.json"], "a lease outlived its holder"


def test_no_prefect_server_outlives_the_command_that_started_it(crashed):
    assert crashed["left"] == [[]] * (len(CRASH_POINTS) + 1)
    assert not list((crashed["home"] / "servers").glob("*.json"))


def test_the_batch_finished_exactly_once(crashed):
    from mlflow import MlflowClient

    from forgetflow.tracking import configure

    settings = crashed["settings"]
    ledger = open_ledger(settings)
    assert ledger.verify().ok
    events = [e["event"] for e in ledger.status(crashed["sample"]).history]
    assert events == ["received", "validated", "batched", "unlearned", "evaluated", "registered", "promoted", "erased"], events
    assert ledger.status("unknown-subject").state == "rejected"
    configure(settings)
    versions = MlflowClient().search_model_versions(f"name='{settings.registered_model_name}'")
    assert sorted(v.tags.get("forgetflow.role", "bootstrap") for v in versions) == ["bootstrap", "candidate", "reference"]


def test_runs_the_killed_registration_left_open_end_killed(crashed):
    from mlflow import MlflowClient

    from forgetflow.tracking import configure

    experiment_id = configure(crashed["settings"])
    runs = MlflowClient().search_runs([experiment_id], max_results=1000)
    assert not [r.info.run_id for r in runs if r.info.status == "RUNNING"]
    killed = [r for r in runs if r.info.status == "KILLED"]
    assert killed and all(r.data.tags.get("forgetflow.status") == "interrupted" for r in killed)


def test_nothing_keeps_forgotten_ids_or_a_rejected_subject_in_clear_text(crashed):
    settings = crashed["settings"]
    [state_file] = (settings.state_dir / "batches").glob("batch-*.json")
    state = json.loads(state_file.read_text())
    assert state["closed"] and "sample_ids" not in state_file.read_text() and "new_labels" not in state_file.read_text()
    assert all("n_samples" in run for run in state["steps"]["unlearned"]["runs"])
    processed = settings.data_dir / "requests" / "processed"
    copies = list(processed.iterdir()) if processed.is_dir() else []
    assert not [p.name for p in copies if SUBJECT in p.read_text(errors="replace")]


def test_stored_text_prints_as_text_everywhere(crashed):
    ws, request_id = crashed["ws"], crashed["sample"]
    for args in (("request", "list"), ("request", "show", request_id), ("status",), ("audit", "request", request_id), ("model", "list")):
        run = cli(ws, *args)
        assert run.returncode == 0, f"{args}: {run.stdout[-1500:]}{run.stderr[-1500:]}"
        assert "Traceback" not in run.stderr
    show = cli(ws, "request", "show", request_id).stdout
    assert f"requested_by: {HOSTILE}" in show and "reason: [red]GDPR[/" in show


TAKER = """
import sys, time
from forgetflow.cli.common import use_prefect
from forgetflow.settings import load_settings

settings = load_settings(sys.argv[1])
use_prefect(settings)
from forgetflow.service.limits import ensure_limits, workspace_slot

ensure_limits(settings)
with workspace_slot(settings, purpose="slot taker"):
    print("holding", flush=True)
    time.sleep(600)
"""


def test_wait_zero_stops_at_once_and_a_killed_holder_blocks_nothing(crashed):
    ws = crashed["ws"]
    log = ws.parent / "taker.log"
    with open(log, "w") as out:
        taker = subprocess.Popen([sys.executable, "-c", TAKER, str(ws)], env=cli_env(ws), stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while "holding" not in log.read_text():
            assert taker.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.2)
        started = time.monotonic()
        busy = cli(ws, "process", "--wait", "0")
        assert busy.returncode == 2 and "is busy: slot taker" in busy.stderr and "Traceback" not in busy.stderr
        assert time.monotonic() - started < 10  # no server, no flow: the holder is on record
        queued = cli(ws, "process", "--wait", "2")
        assert queued.returncode == 2 and "is busy: slot taker" in queued.stderr and "Traceback" not in queued.stdout + queued.stderr
    finally:
        taker.send_signal(signal.SIGKILL)
        taker.wait()
    assert servers_left(crashed["home"]) == []
    after = cli(ws, "process", "--wait", "0")
    assert after.returncode == 0 and "no pending requests" in after.stdout, after.stderr[-2000:]
    assert WAITING not in after.stdout + after.stderr


# Holds the workspace slot on the server at PREFECT_API_URL, then kills itself.
HOLDER_KILLED = """
import os, signal, sys
from forgetflow.service.limits import ensure_limits, workspace_slot
from forgetflow.settings import load_settings

settings = load_settings(sys.argv[1])
ensure_limits(settings)
with workspace_slot(settings, purpose="killed holder"):
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_dead_holders_slot_is_freed_on_an_external_server(prefect_harness, tmp_path):
    """A server the user runs (PREFECT_API_URL) keeps the lease: the next run releases it by its
    recorded lease ID at once instead of waiting for the lease to expire."""
    from prefect.settings import PREFECT_API_URL

    from forgetflow.service.limits import workspace_slot

    ws = make_workspace(tmp_path / "ws")
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    run = subprocess.run([sys.executable, "-c", HOLDER_KILLED, str(ws)], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == -signal.SIGKILL, run.stderr[-2000:]
    settings = load_settings(ws)
    assert len(list((settings.state_dir / "slots").glob("*.json"))) == 1
    started = time.monotonic()
    with workspace_slot(settings, wait_s=0):
        pass
    assert time.monotonic() - started < 10
    assert not list((settings.state_dir / "slots").glob("*.json"))


# A slot counted with no lease anywhere, as an older forgetflow left it (leases in the killed
# server's memory): the command's own server frees it, once it is seen twice a moment apart.
UNLEASED = """
import sys, time
from forgetflow.cli.common import use_prefect
from forgetflow.settings import load_settings

settings = load_settings(sys.argv[1])
use_prefect(settings)
from prefect.client.orchestration import get_client

from forgetflow.service.limits import ensure_limits, workspace_limit_name, workspace_slot

ensure_limits(settings)
with get_client(sync_client=True) as client:
    client.increment_concurrency_slots(names=[workspace_limit_name(settings)], slots=1, mode="concurrency")
started = time.monotonic()
with workspace_slot(settings, wait_s=0):
    print(f"got the slot after {time.monotonic() - started:.1f} s", flush=True)
"""


def test_a_slot_held_by_no_lease_is_freed(crashed):
    ws = crashed["ws"]
    run = subprocess.run([sys.executable, "-c", UNLEASED, str(ws)], env=cli_env(ws), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "got the slot" in run.stdout, run.stdout[-2000:] + run.stderr[-2000:]


def test_the_ui_of_serve_on_another_port_lists_its_deployments(crashed):
    """Issue 23, item 6: `forgetflow serve --port P` starts its own server, whose UI must call the
    API on P, not on Prefect's default 4200. Checked in headless Chromium: the deployments page,
    rendered by the UI's JavaScript, lists this workspace's deployments."""
    import shutil

    import httpx

    from forgetflow.service.deployments import deployment_names
    from localservers import free_port

    browser = shutil.which("chromium-headless-shell") or shutil.which("chromium")
    if browser is None:
        pytest.skip("no headless Chromium: apt-get install chromium-headless-shell (scripts/setup.sh installs it)")
    ws, port = crashed["ws"], free_port()
    names = deployment_names(crashed["settings"])
    log = ws.parent / "serve-ui.log"
    with open(log, "w") as out:
        serve = subprocess.Popen([str(BIN / "forgetflow"), "serve", "--port", str(port), "--no-watch-inbox", "-w", str(ws)], env=cli_env(ws), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while True:
            assert serve.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            try:
                served = {d["name"] for d in httpx.post(f"http://127.0.0.1:{port}/api/deployments/filter", json={}, timeout=5).json()}
            except (httpx.HTTPError, ValueError, TypeError):
                served = set()
            if {names.batch, names.urgent} <= served:
                break
            time.sleep(1)
        chromium = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--virtual-time-budget=15000"]
        dom = subprocess.run([*chromium, "--dump-dom", f"http://127.0.0.1:{port}/deployments"], capture_output=True, text=True, timeout=120).stdout
    finally:
        os.killpg(serve.pid, signal.SIGINT)  # as Ctrl-C would; serve stops its own server
        try:
            stopped = serve.wait(timeout=120) is not None
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait()
            stopped = False
    assert stopped, "serve did not stop on SIGINT: " + log.read_text()[-2000:]
    assert "Can't connect to Server API" not in dom
    assert names.batch in dom and names.urgent in dom, dom[-1500:]
    assert servers_left(crashed["home"]) == []
