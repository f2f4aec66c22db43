"""Scenario `service` (issue 8): forgetflow as a served Prefect service on digits.

    python -m benchmarks.service [--repeats 3] [--intake 1000] [--out DIR]

1. Latency of an urgent request: from the start of `forgetflow request submit --urgent` (a new
   process, as a user would run it) to the champion alias naming a new model version, with
   `forgetflow serve` running against its own `prefect server start`. Beside it, the flow run's own
   duration (Prefect's start and end times); their difference is what the service adds: the event,
   the automation, the runner's poll, the flow subprocess's start-up, the alias lookup.
   Target: latency <= the flow's own time + 15 s.
2. Intake throughput (requests recorded per second) of each path with the server up, every request
   announced by an event: the Python API `submit()` (events queued and sent in batches by a
   background thread; the time includes the final flush), `submit_many()` in batches of 100 (one
   ledger group commit and one event batch each), an inbox sweep of N files (one group commit, one
   event batch), and `submit()` without a server (the ledger alone). A single `submit()` fsyncs the
   ledger once per request: that, not the event, bounds its rate. Target: >= 200/s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

from benchmarks.environment import describe, markdown_line

RESULTS = Path(__file__).parent / "results"
# Read by this section and by the targets table of BENCHMARKS.md.
TARGETS = {"latency_over_flow_seconds": 15.0, "intake_per_second": 200.0}
BIN = Path(sys.executable).parent


def _env(workspace: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FORGETFLOW_", "PREFECT_API_URL"))}
    env.update(FORGETFLOW_WORKSPACE=str(workspace), TQDM_DISABLE="1", DVC_NO_ANALYTICS="1")
    return env


def _wait(predicate, timeout_s: float, what: str, interval_s: float = 0.1):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise TimeoutError(f"timed out waiting for {what}")


def _champion(workspace: Path) -> int:
    from mlflow import MlflowClient

    from forgetflow.settings import load_settings

    settings = load_settings(workspace)
    return int(MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri).get_model_version_by_alias(settings.registered_model_name, "champion").version)


def _train_ids(workspace: Path) -> list[int]:
    from forgetflow.data.store import DatasetVersion

    return [int(i) for i in DatasetVersion(workspace / "data" / "digits").load("train").sample_ids]


def _finished_run(api_url: str, run_name: str) -> dict:
    """The flow run once it is in a terminal state (the champion moves before its last steps)."""

    def finished():
        runs = httpx.post(f"{api_url}/flow_runs/filter", json={"flow_runs": {"name": {"any_": [run_name]}}}, timeout=10).json()
        return runs[0] if runs and runs[0]["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") else None

    return _wait(finished, 600, f"flow run {run_name} to finish", interval_s=0.5)


def measure_latency(workspace: Path, repeats: int, log: Path) -> list[dict]:
    env = _env(workspace)
    rows = []
    with open(log, "ab") as out:
        serving = subprocess.Popen([str(BIN / "forgetflow"), "serve", "-w", str(workspace), "--port", str(_free_port())], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        service_file = workspace / ".forgetflow" / "service.json"
        _wait(service_file.exists, 300, "forgetflow serve", interval_s=0.5)
        api_url = json.loads(service_file.read_text())["api_url"]
        ids = _train_ids(workspace)
        for i in range(repeats):
            before = _champion(workspace)
            request_id = f"latency-{i}"
            submitted_at = time.time()
            started = time.perf_counter()
            subprocess.run([str(BIN / "forgetflow"), "request", "submit", "--kind", "samples", "--ids", ",".join(map(str, ids[20 * i : 20 * i + 20])), "--reason", "benchmark", "--requested-by", "benchmarks.service", "--request-id", request_id, "--urgent"], env=env, check=True, capture_output=True)
            _wait(lambda: _champion(workspace) > before, 1200, "the new champion", interval_s=0.2)
            latency = time.perf_counter() - started
            run = _finished_run(api_url, f"urgent-{request_id}")
            flow = float(run["total_run_time"])
            start_delay = datetime.fromisoformat(run["start_time"]).timestamp() - submitted_at
            rows.append({"request": request_id, "latency_s": round(latency, 2), "flow_s": round(flow, 2), "start_delay_s": round(start_delay, 2), "state": run["state_type"]})
            print(f"urgent request {i + 1}/{repeats}: {latency:.1f} s to a new champion; flow run {flow:.1f} s, started {start_delay:.1f} s after the submit began", flush=True)
        intake = measure_intake(workspace, api_url)
    finally:
        os.killpg(serving.pid, 15)
        serving.wait(60)
    return rows, intake


def measure_intake(workspace: Path, api_url: str, n: int = 1000) -> list[dict]:
    """Requests recorded per second on each intake path, in fresh copies of the ledger."""
    from forgetflow.requests.intake import inbox_dir, process_inbox, submit
    from forgetflow.settings import load_settings

    rows = []
    paths = (("submit_many() in batches of 100, one event batch each", True), ("inbox sweep, one event batch", True), ("submit() per request, events sent in the background", True), ("submit() per request, no server", False))
    for path, with_server in paths:
        time.sleep(5)  # let the server digest the previous path's events (it evaluates triggers on each)
        scratch = Path(tempfile.mkdtemp(prefix="intake-"))
        (scratch / "params.yaml").write_text((workspace / "params.yaml").read_text())
        settings = load_settings(scratch)
        if with_server:
            os.environ["PREFECT_API_URL"] = api_url
        else:
            os.environ.pop("PREFECT_API_URL", None)
        requests = [{"request_id": f"in-{k}", "kind": "samples", "ids": [k], "reason": "benchmark", "requested_by": "benchmarks.service", "urgent": False} for k in range(n)]
        if path.startswith("inbox"):
            inbox = inbox_dir(settings)
            inbox.mkdir(parents=True)
            for request in requests:
                (inbox / f"{request['request_id']}.json").write_text(json.dumps(request))
            started = time.perf_counter()
            report = process_inbox(settings)
            seconds = time.perf_counter() - started
            assert len(report.processed) == n and report.announcement.sent == n, report.announcement
        elif path.startswith("submit_many"):
            from forgetflow.requests.intake import submit_many

            started = time.perf_counter()
            for start in range(0, n, 100):
                outcomes = submit_many(settings, requests[start : start + 100], source="benchmark", announce="wait")
                assert all(o.outcome == "recorded" and o.announcement.sent == len(outcomes) for o in outcomes)
            seconds = time.perf_counter() - started
        else:
            from forgetflow.requests.intake import open_ledger
            from forgetflow.service.events import flush_announcements

            ledger = open_ledger(settings)
            started = time.perf_counter()
            for request in requests:
                result = submit(settings, request, source="benchmark", ledger=ledger)  # events queued, sent in batches
                assert result.outcome == "recorded"
                assert (result.announcement.queued == 1) == with_server
            assert flush_announcements(60)  # counted: every event has reached the server
            seconds = time.perf_counter() - started
        rows.append({"path": path, "requests": n, "seconds": round(seconds, 3), "per_second": round(n / seconds, 1)})
        print(f"intake, {path}: {n / seconds:.0f} requests/s", flush=True)
        shutil.rmtree(scratch, ignore_errors=True)
    os.environ.pop("PREFECT_API_URL", None)
    return rows


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def latency_margins(result: dict) -> list[float]:
    """Per urgent request: latency minus the flow's own run time (what the target bounds)."""
    return [row["latency_s"] - row["flow_s"] for row in result["latency"]]


def render(result: dict) -> str:
    lines = ["## Service: urgent-request latency and intake throughput", "", f"`{result['latency_command']}` (latency) and `{result['command']}` (intake) on {markdown_line(result['environment'])}.", ""]
    lines += [
        "*Latency*: from the start of `forgetflow request submit --urgent` (a new process) to the champion alias on a new version, with `forgetflow serve` running. "
        "*Flow*: the triggered flow run's whole duration (Prefect's run time; the champion moves before its erase and close steps). "
        "*Start delay*: from the submit to the flow run's start: the CLI, the event, the automation, the runner's poll and the flow subprocess. "
        f"Target: latency <= flow + {TARGETS['latency_over_flow_seconds']:g} s.", ""]
    lines += ["| request | latency (s) | flow (s) | latency - flow (s) | start delay (s) |", "|---|---:|---:|---:|---:|"]
    for row in result["latency"]:
        lines.append(f"| {row['request']} | {row['latency_s']:.1f} | {row['flow_s']:.1f} | {row['latency_s'] - row['flow_s']:.1f} | {row['start_delay_s']:.1f} |")
    margin = latency_margins(result)
    delays = [row["start_delay_s"] for row in result["latency"]]
    lines += ["", f"Latency - flow: max {max(margin):.1f} s (target <= {TARGETS['latency_over_flow_seconds']:g} s: {'met' if max(margin) <= TARGETS['latency_over_flow_seconds'] else 'missed'}); start delay mean {statistics.mean(delays):.1f} s.", ""]
    lines += [f"Intake throughput (target >= {TARGETS['intake_per_second']:g} requests/s):", "", "| path | requests | seconds | requests/s |", "|---|---:|---:|---:|"]
    for row in result["intake"]:
        lines.append(f"| {row['path']} | {row['requests']} | {row['seconds']:.2f} | {row['per_second']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one urgent request")
    parser.add_argument("--intake-only", action="store_true", help="only the intake throughput (starts its own Prefect server)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--device", default=None, help="accepted for the suite runner; the served flows use FORGETFLOW_DEVICE")
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    workspace = Path(tempfile.mkdtemp(prefix="forgetflow-service-bench-")) / "ws"
    workspace.mkdir(parents=True)
    shutil.copy(Path(__file__).resolve().parent.parent / "params.yaml", workspace / "params.yaml")
    from forgetflow.settings import load_settings

    if args.intake_only:
        from forgetflow.service.server import start_local_server

        server = start_local_server(load_settings(workspace), port=_free_port())
        try:
            intake = measure_intake(workspace, server.api_url)
        finally:
            server.stop()
        previous = json.loads((args.out / "service.json").read_text()) if (args.out / "service.json").exists() else {}
        latency = previous.get("latency", [])
        latency_command = previous.get("latency_command", previous.get("command"))
    else:
        from forgetflow.registration import bootstrap_workspace

        print("bootstrapping digits with the repository's params.yaml ...", flush=True)
        bootstrap_workspace(load_settings(workspace), "digits")
        latency, intake = measure_latency(workspace, repeats, workspace.parent / "serve.log")
        latency_command = None
    command = "python -m benchmarks.service" + (" --intake-only" if args.intake_only else " --quick" if args.quick else f" --repeats {repeats}")
    result = {"command": command, "latency_command": latency_command or command, "environment": describe(), "latency": latency, "intake": intake}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "service.json").write_text(json.dumps(result, indent=2))
    (args.out / "service.md").write_text(render(result))
    print(render(result))
    return result


if __name__ == "__main__":
    main()
