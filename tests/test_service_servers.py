"""forgetflow as a service against real servers on localhost: `prefect server start`, an MLflow
tracking server, `forgetflow serve` and a process worker (issue 8).

One module-scoped set-up (servers + a bootstrapped digits workspace) is shared by the tests, which
run in order: urgent triggers while serving, a restart that keeps the schedule and runs it, the
same flow through a work pool with `serve` stopped, then stopping runs that hold the workspace slot.
Each test leaves no run behind that holds a slot, so the next one never waits for a lease to expire.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
import yaml

from conftest import make_workspace
from localservers import BIN, background, flow_run_processes, frozen, prefect_and_mlflow_servers, stop, wait_until

pytestmark = [pytest.mark.servers, pytest.mark.timeout(900)]

FLOW_TIMEOUT_S = 420  # a deletion batch is ~20 s on a quiet 2-core machine; much slower under load


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Prefect server + MLflow server + a workspace bootstrapped through both."""
    root = tmp_path_factory.mktemp("service")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORGETFLOW_")}
    env.update(FORGETFLOW_DEVICE="cpu", TQDM_DISABLE="1", PREFECT_RUNNER_POLL_FREQUENCY="1", PREFECT_WORKER_QUERY_SECONDS="1",
               PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="2")
    with prefect_and_mlflow_servers(root, env) as (api_url, tracking_uri):
        env.update(PREFECT_API_URL=api_url, FORGETFLOW_MLFLOW_TRACKING_URI=tracking_uri)
        workspace = make_workspace(root / "ws")
        cli(env, "bootstrap", "digits", "-w", str(workspace))
        yield {"env": env, "api": api_url, "mlflow": tracking_uri, "ws": workspace, "root": root, "train_ids": original_train_ids(workspace)}


def original_train_ids(workspace: Path) -> list[int]:
    """The training IDs of the bootstrapped version: the tests pick the samples they delete from
    it, so each request names samples still present."""
    from forgetflow.data.store import DatasetVersion

    return [int(i) for i in DatasetVersion(workspace / "data" / "digits").load("train").sample_ids]


def cli(env: dict, *args: str) -> str:
    result = subprocess.run([str(BIN / "forgetflow"), *args], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"forgetflow {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def submit(stack, request_id: str, ids: str, *, urgent: bool) -> str:
    return cli(stack["env"], "request", "submit", "-w", str(stack["ws"]), "--kind", "samples", "--ids", ids, "--reason", "test", "--requested-by", "pytest", "--request-id", request_id, *(["--urgent"] if urgent else []))


def ledger_state(stack, request_id: str) -> str | None:
    from forgetflow.requests.intake import open_ledger
    from forgetflow.settings import load_settings

    status = open_ledger(load_settings(stack["ws"])).status(request_id)
    return status.state if status else None


def batch_of(stack, request_id: str) -> str | None:
    from forgetflow.requests.intake import open_ledger
    from forgetflow.settings import load_settings

    entry = open_ledger(load_settings(stack["ws"])).status(request_id).last("batched")
    return entry.get("batch_id") if entry else None


def flow_runs(stack, **flow_run_filter) -> list[dict]:
    body = {"flow_runs": flow_run_filter, "limit": 200} if flow_run_filter else {"limit": 200}
    response = httpx.post(f"{stack['api']}/flow_runs/filter", json=body, timeout=10)
    response.raise_for_status()
    return response.json()


def run_named(stack, name: str) -> dict | None:
    runs = flow_runs(stack, name={"any_": [name]})
    return runs[0] if runs else None


def served_deployment_ids(stack) -> list[str]:
    deployments = httpx.post(f"{stack['api']}/deployments/filter", json={}, timeout=10).json()
    return [d["id"] for d in deployments if d["name"].startswith(("batch-", "urgent-")) and "-on-" not in d["name"]]


def runs_in_flight(stack, deployment_ids: list[str]) -> list[dict]:
    return flow_runs(stack, deployment_id={"any_": deployment_ids}, state={"type": {"any_": ["PENDING", "RUNNING", "CANCELLING"]}})


def unfinished_runs(stack, deployment_ids: list[str]) -> list[dict]:
    """Runs of the deployments that are started, due to start now, or queued behind the
    deployment's concurrency limit: those wait in AwaitingConcurrencySlot with a start time a few
    seconds ahead, and pausing the deployment does not delete them (Prefect keeps them)."""
    selected = {"deployment_id": {"any_": deployment_ids}}
    due = flow_runs(stack, **selected, state={"type": {"any_": ["SCHEDULED"]}}, next_scheduled_start_time={"before_": datetime.now(timezone.utc).isoformat()})
    queued = flow_runs(stack, **selected, state={"type": {"any_": ["SCHEDULED"]}, "name": {"any_": ["AwaitingConcurrencySlot"]}})
    return runs_in_flight(stack, deployment_ids) + due + [r for r in queued if r["id"] not in {d["id"] for d in due}]


def cancel_queued_runs(stack, deployment_id: str) -> set[str]:
    """Cancel the deployment's runs that have not started (scheduled, or waiting for its limit);
    returns the ids the server accepted. An orchestrated (not forced) transition: a run the runner
    has just moved to Pending or beyond is left alone."""
    cancelled = set()
    for run in flow_runs(stack, deployment_id={"any_": [deployment_id]}, state={"type": {"any_": ["SCHEDULED"]}}):
        state = {"type": "CANCELLED", "name": "Cancelled", "message": "cancelled by the test: a queued tick after the schedule was paused"}
        response = httpx.post(f"{stack['api']}/flow_runs/{run['id']}/set_state", json={"state": state, "force": False}, timeout=10)
        response.raise_for_status()
        if response.json()["status"] == "ACCEPT":
            cancelled.add(run["id"])
    return cancelled


def workspace_slots_taken(stack) -> int:
    from forgetflow.service.limits import workspace_limit_name
    from forgetflow.settings import load_settings

    name = workspace_limit_name(load_settings(stack["ws"]))
    response = httpx.get(f"{stack['api']}/v2/concurrency_limits/{name}", timeout=10)
    if response.status_code == 404:  # no flow or serve has created it yet
        return 0
    response.raise_for_status()
    return response.json()["active_slots"]


def champion_version(stack) -> int:
    from mlflow import MlflowClient

    return int(MlflowClient(tracking_uri=stack["mlflow"], registry_uri=stack["mlflow"]).get_model_version_by_alias("forgetflow-classifier", "champion").version)


def train_ids(stack, n: int, skip: int = 0) -> str:
    """IDs `skip` to `skip + n` of the bootstrapped train split (tests take disjoint ranges)."""
    return ",".join(str(i) for i in stack["train_ids"][skip : skip + n])


@pytest.fixture(scope="module")
def serve_log(stack):
    return stack["root"] / "serve.log"


def start_serve(stack, log: Path):
    return background([str(BIN / "forgetflow"), "serve", "-w", str(stack["ws"])], stack["env"], log)


def wait_serving(stack, process, log):
    service_file = Path(stack["ws"]) / ".forgetflow" / "service.json"
    wait_until(service_file.exists, 120, "forgetflow serve start-up", process=process, log=log)


def test_urgent_requests_trigger_runs_and_a_second_trigger_queues(stack, serve_log):
    before = champion_version(stack)
    with start_serve(stack, serve_log) as serving:
        wait_serving(stack, serving, serve_log)
        out = submit(stack, "urgent-a", train_ids(stack, 6), urgent=True)
        assert "announced" in out
        # A second urgent request once the first batch is open: its run waits for the workspace slot.
        wait_until(lambda: batch_of(stack, "urgent-a"), FLOW_TIMEOUT_S, "the urgent run to open its batch", process=serving, log=serve_log)
        submit(stack, "urgent-b", train_ids(stack, 6, skip=6), urgent=True)
        wait_until(lambda: ledger_state(stack, "urgent-a") == "erased" and ledger_state(stack, "urgent-b") == "erased", FLOW_TIMEOUT_S, "both urgent requests to be erased", interval_s=2, process=serving, log=serve_log)
        wait_until(lambda: (run_named(stack, "urgent-urgent-b") or {}).get("state_type") == "COMPLETED", 120, "the second urgent run to finish", process=serving, log=serve_log)
        # the CLI sees the service: deployments, limits, nothing pending
        status = json.loads(cli(stack["env"], "status", "-w", str(stack["ws"]), "--json"))
    run_a = run_named(stack, "urgent-urgent-a")
    assert run_a["state_type"] == "COMPLETED"
    assert run_a["parameters"]["trigger"] == "urgent-a"
    assert batch_of(stack, "urgent-a") != batch_of(stack, "urgent-b"), "the request that arrived during a batch joins the next one"
    assert champion_version(stack) > before, "the triggered flow registered and promoted a new model version"
    assert not [r["name"] for r in flow_runs(stack) if r["state_type"] in ("FAILED", "CRASHED")]
    assert status["serving"] and status["server_healthy"]
    assert {limit["limit"] for limit in status["limits"]} == {1}
    names = {d["name"].split("/")[1].split("-")[0]: d for d in status["deployments"]}
    assert names["batch"]["next_runs"] and names["batch"]["schedules"] == ["0 2 * * *"]
    assert names["urgent"]["triggers"] == 1
    assert status["pending"] == []


def test_schedule_survives_a_restart_and_runs_batches(stack, serve_log):
    service_file = Path(stack["ws"]) / ".forgetflow" / "service.json"
    assert not service_file.exists(), "a stopped serve removes its state file"
    deployments = httpx.post(f"{stack['api']}/deployments/filter", json={}, timeout=10).json()
    batch = next(d for d in deployments if d["name"].startswith("batch-"))
    assert batch["paused"] is False and all(s["active"] for s in batch["schedules"]), "stopping serve must not pause the schedule"
    # While nothing serves, an urgent request: its event meets no runner, so serve catches up.
    submit(stack, "urgent-d", train_ids(stack, 5, skip=17), urgent=True)
    params_path = Path(stack["ws"]) / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    params["service"] = {"batch_interval_s": 8, "inbox_poll_s": 1}
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        with start_serve(stack, serve_log) as serving:
            wait_serving(stack, serving, serve_log)
            wait_until(lambda: (run_named(stack, "urgent-urgent-d") or {}).get("state_type") == "COMPLETED", FLOW_TIMEOUT_S, "the catch-up run", interval_s=2, process=serving, log=serve_log)
            assert ledger_state(stack, "urgent-d") == "erased"
            # Regular requests now: only the schedule can pick them up (one via the inbox watcher).
            submit(stack, "regular-c", train_ids(stack, 5, skip=12), urgent=False)
            inbox = Path(stack["ws"]) / "data" / "requests" / "inbox"
            inbox.mkdir(parents=True, exist_ok=True)
            (inbox / "e.json").write_text(json.dumps({"request_id": "inbox-e", "kind": "samples", "ids": [int(i) for i in train_ids(stack, 3, skip=22).split(",")], "reason": "test", "requested_by": "pytest"}))
            wait_until(lambda: all(ledger_state(stack, r) == "erased" for r in ("regular-c", "inbox-e")), FLOW_TIMEOUT_S, "a scheduled batch to erase the regular requests", interval_s=2, process=serving, log=serve_log)
            # The ledger says "erased" before the run finishes, and every 8 s another scheduled run
            # is due: stop the schedule and let serve finish every run it has before stopping it.
            # Pausing deletes the scheduled runs but not the ticks that came during a batch and
            # wait on the deployment's limit; each would run an empty batch (about 15 s apiece, one
            # after another), so cancel those that have not started. A run's process outlives its
            # Completed state by a moment: the runner's shutdown cancels any run whose process is
            # still alive, even one that has completed, so wait for the processes too, twice in a row.
            httpx.post(f"{stack['api']}/deployments/{batch['id']}/pause_deployment", timeout=10).raise_for_status()
            quiet_checks = []
            cancelled_ticks = set()

            def served_runs_done() -> bool:
                cancelled_ticks.update(cancel_queued_runs(stack, batch["id"]))
                done = not unfinished_runs(stack, served_deployment_ids(stack)) and not flow_run_processes(serving.pid)
                quiet_checks.append(done)
                return quiet_checks[-2:] == [True, True]

            wait_until(served_runs_done, FLOW_TIMEOUT_S, "the served runs to finish", interval_s=1, process=serving, log=serve_log)
        batch_runs = flow_runs(stack, deployment_id={"any_": [batch["id"]]})
        assert "COMPLETED" in {r["state_type"] for r in batch_runs}, "a scheduled run completed"
        ended_badly = [f"{r['name']}: {r['state_name']} ({(r.get('state') or {}).get('message')})" for r in batch_runs if r["state_type"] in ("FAILED", "CRASHED", "CANCELLED") and r["id"] not in cancelled_ticks]
        assert not ended_badly, f"scheduled runs that did not complete (serve log: {serve_log})"
        assert {batch_of(stack, "regular-c"), batch_of(stack, "inbox-e")} != {batch_of(stack, "urgent-d")}
    finally:
        params["service"] = {"batch_interval_s": 3600}  # quiet schedule for the next tests, even after a failure
        params_path.write_text(yaml.safe_dump(params, sort_keys=False))


def test_deletion_flow_runs_on_a_process_worker(stack):
    out = cli(stack["env"], "deploy", "-w", str(stack["ws"]), "--pool", "pytest-pool")
    assert "on pool pytest-pool" in out
    submit(stack, "pooled-f", train_ids(stack, 4, skip=30), urgent=False)
    log = stack["root"] / "worker.log"
    with background([str(BIN / "prefect"), "worker", "start", "--pool", "pytest-pool", "--type", "process"], stack["env"], log) as worker:
        deployments = httpx.post(f"{stack['api']}/deployments/filter", json={}, timeout=10).json()
        pooled = next(d for d in deployments if d["name"].startswith("batch-") and d["work_pool_name"] == "pytest-pool")
        response = httpx.post(f"{stack['api']}/deployments/{pooled['id']}/create_flow_run", json={}, timeout=10)
        response.raise_for_status()
        run_id = response.json()["id"]
        state = lambda: httpx.get(f"{stack['api']}/flow_runs/{run_id}", timeout=10).json()["state_type"]
        wait_until(lambda: state() in ("COMPLETED", "FAILED", "CRASHED"), FLOW_TIMEOUT_S, "the pool run to finish", interval_s=2, process=worker, log=log)
    assert state() == "COMPLETED"
    assert ledger_state(stack, "pooled-f") == "erased"


def test_ctrl_c_on_serve_stops_its_runs_and_frees_the_workspace_slot(stack, serve_log):
    """Ctrl-C signals the whole process group. serve must stop its runs the graceful way (they exit
    and release their slots), not let them be SIGKILLed, which leaves them RUNNING with their slots
    taken until the leases expire."""
    assert workspace_slots_taken(stack) == 0, "an earlier test left the workspace slot taken"
    with start_serve(stack, serve_log) as serving:
        wait_serving(stack, serving, serve_log)
        submit(stack, "urgent-g", train_ids(stack, 4, skip=40), urgent=True)
        wait_until(lambda: workspace_slots_taken(stack) == 1, FLOW_TIMEOUT_S, "a served run to take the workspace slot", process=serving, log=serve_log)
        os.killpg(serving.pid, signal.SIGINT)
        serving.wait(timeout=90)
    assert not [r["name"] for r in runs_in_flight(stack, served_deployment_ids(stack))], "runs left unfinished by serve"
    assert workspace_slots_taken(stack) == 0, "the stopped runs released the workspace slot"


# Takes the workspace slot when told to on stdin and holds it; exits on SIGTERM, as a flow run does.
SLOT_TAKER = """
import signal, sys, time
from forgetflow.service.limits import ensure_limits, workspace_slot
from forgetflow.settings import load_settings

signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
settings = load_settings(sys.argv[1])
ensure_limits(settings)
print("slot taker ready", flush=True)
sys.stdin.readline()
with workspace_slot(settings):
    time.sleep(600)
"""


def test_a_process_stopped_while_its_slot_is_being_granted_does_not_keep_it(stack):
    """SIGTERM while the request for the slot waits on a busy server: the process must exit
    either without the slot or after giving it back, never leaving a grant nobody releases."""
    assert workspace_slots_taken(stack) == 0, "an earlier test left the workspace slot taken"
    log = stack["root"] / "slot-taker.log"
    with open(log, "ab") as out:
        taker = subprocess.Popen([sys.executable, "-c", SLOT_TAKER, str(stack["ws"])], env=stack["env"], stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: "slot taker ready" in log.read_text(), 120, "the slot taker to start", process=taker, log=log)
        with frozen(stack["api"]):
            taker.stdin.write(b"take it\n")
            taker.stdin.flush()
            time.sleep(1.0)  # the request for the slot now waits in the frozen server's socket
            taker.send_signal(signal.SIGTERM)
            time.sleep(1.0)
        taker.wait(timeout=60)
        time.sleep(1.0)  # a request the server got from a process that has exited is served by now
    finally:
        stop(taker)
    assert taker.returncode == 128 + signal.SIGTERM, "the taker exited on SIGTERM"
    assert workspace_slots_taken(stack) == 0, "the stopped process left the workspace slot taken"
