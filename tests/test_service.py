"""The service layer without servers: params, events, names, intake announcements (issue 8)."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from forgetflow.cli import app
from forgetflow.errors import ConfigError
from forgetflow.params import load_params
from forgetflow.service.config import service_params
from forgetflow.service.deployments import deployment_names
from forgetflow.service.events import REQUEST_RECEIVED, URGENT_LABEL, WORKSPACE_LABEL, announce, request_event
from forgetflow.settings import load_settings


@pytest.fixture
def event_sink(monkeypatch):
    """A tiny HTTP server standing in for Prefect's events API; PREFECT_API_URL points at it.
    Yields the list of POSTed bodies (each a list of events)."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    posts = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the http.server API
            posts.append((self.path, json.loads(self.rfile.read(int(self.headers["Content-Length"])))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{server.server_port}/api")
    yield posts
    server.shutdown()


def _params_with(workspace, service):
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["service"] = service
    (workspace / "params.yaml").write_text(yaml.safe_dump(params))
    return load_params(workspace / "params.yaml")


def test_service_defaults_to_a_nightly_batch(workspace):
    service = service_params(load_params(workspace / "params.yaml"))
    assert service.batch_cron == "0 2 * * *" and service.timezone == "UTC" and service.batch_interval_s is None


@pytest.mark.parametrize("bad, named", [({"batch_cron": "61 * * * *"}, "61 * * * *"), ({"timezone": "Mars/Olympus"}, "Mars/Olympus"), ({"inbox_poll_s": 0}, "inbox_poll_s"), ({"every": 5}, "every")])
def test_bad_service_params_name_the_problem(workspace, bad, named):
    with pytest.raises(ConfigError) as caught:
        service_params(_params_with(workspace, bad))
    assert named in caught.value.message and "service" in caught.value.message


def test_event_carries_the_request_id_only(workspace):
    settings = load_settings(workspace)
    event = request_event(settings, "req-1", urgent=True)
    assert event["event"] == REQUEST_RECEIVED
    assert event["payload"] == {"request_id": "req-1"}
    assert event["resource"]["prefect.resource.id"] == "forgetflow.request.req-1"
    assert event["resource"][URGENT_LABEL] == "true"
    other = load_settings(workspace.parent / "other")
    assert event["resource"][WORKSPACE_LABEL] != request_event(other, "req-1", urgent=True)["resource"][WORKSPACE_LABEL]


def test_deployment_names_differ_per_workspace_and_pool(workspace, tmp_path):
    settings = load_settings(workspace)
    served, pooled = deployment_names(settings), deployment_names(settings, "gpu pool")
    assert served.batch != pooled.batch and pooled.batch.endswith("-on-gpu-pool")
    assert served.batch != deployment_names(load_settings(tmp_path / "elsewhere" / workspace.name)).batch
    assert served.full("urgent").startswith("forgetflow-process-deletions/urgent-")


def test_no_server_means_no_event_and_nothing_lost(workspace, monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    result = CliRunner().invoke(app, ["request", "submit", "-w", str(workspace), "--kind", "samples", "--ids", "1,2", "--reason", "r", "--requested-by", "me", "--urgent", "--request-id", "u1"])
    assert result.exit_code == 0, result.output
    assert "no Prefect server" in result.output
    ledger = (workspace / "data" / "requests" / "ledger.jsonl").read_text().splitlines()
    received = json.loads(ledger[0])
    assert received["event"] == "received" and received["urgent"] is True


def test_unreachable_server_keeps_the_request(workspace, monkeypatch):
    from localservers import free_port

    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{free_port()}/api")
    result = CliRunner().invoke(app, ["request", "submit", "-w", str(workspace), "--kind", "samples", "--ids", "3", "--reason", "r", "--requested-by", "me", "--urgent", "--request-id", "u2"])
    assert result.exit_code == 0, result.output
    assert "could not announce" in " ".join(result.output.split()) and "next batch" in result.output
    from forgetflow.requests.intake import open_ledger

    assert open_ledger(load_settings(workspace)).status("u2").state == "received"


def test_announce_posts_one_batch_of_events(workspace, event_sink):
    """The intake path posts to the events API."""
    outcome = announce(load_settings(workspace), [("a", True), ("b", False)])
    assert outcome.sent == 2 and outcome.error is None
    [(path, events)] = event_sink
    assert path == "/api/events"
    assert [e["payload"] for e in events] == [{"request_id": "a"}, {"request_id": "b"}]
    assert [e["resource"][URGENT_LABEL] for e in events] == ["true", "false"]


def test_status_without_a_server_lists_pending_requests(workspace, monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    runner = CliRunner()
    runner.invoke(app, ["request", "submit", "-w", str(workspace), "--kind", "samples", "--ids", "4", "--reason", "r", "--requested-by", "me", "--urgent", "--request-id", "p1"])
    result = runner.invoke(app, ["status", "-w", str(workspace), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["api_url"] is None and report["server_healthy"] is False
    assert [(p["request_id"], p["urgent"]) for p in report["pending"]] == [("p1", True)]


def test_deploy_needs_a_server(workspace, monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    from forgetflow.cli import main
    import sys

    monkeypatch.setattr(sys, "argv", ["forgetflow", "deploy", "-w", str(workspace), "--pool", "p"])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2


@pytest.mark.flow
def test_device_slot_admits_one_job_at_a_time(prefect_harness, workspace):
    import threading
    import time

    from forgetflow.service.limits import device_slot, ensure_limits

    settings = load_settings(workspace)
    ensure_limits(settings)
    active, peak, lock = [0], [0], threading.Lock()

    def job():
        with device_slot(settings):
            with lock:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
            time.sleep(0.3)
            with lock:
                active[0] -= 1

    threads = [threading.Thread(target=job) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert peak[0] == 1 and active[0] == 0


@pytest.mark.flow
@pytest.mark.timeout(90)  # a job that asked again would wait for its own slot: fail, do not hang
def test_a_job_that_holds_the_device_slot_does_not_ask_for_it_again(prefect_harness, workspace):
    import threading
    import time

    from forgetflow.service.limits import device_slot, ensure_limits

    settings = load_settings(workspace)
    ensure_limits(settings)
    rival_entered = []

    def rival():
        with device_slot(settings):
            rival_entered.append(time.monotonic())

    with device_slot(settings):
        with device_slot(settings):  # asking again would wait forever on the 1-slot limit
            thread = threading.Thread(target=rival)
            thread.start()
            time.sleep(1.0)
            assert not rival_entered  # another thread still queues for the slot
        time.sleep(0.5)
        assert not rival_entered  # leaving the inner block keeps the outer one's slot
        released = time.monotonic()
    thread.join(60)
    assert rival_entered and rival_entered[0] >= released


@pytest.mark.flow
@pytest.mark.timeout(90)
def test_a_job_queued_for_a_slot_logs_one_wait_line_and_no_error(prefect_harness, workspace, caplog):
    import logging
    import threading
    import time

    from forgetflow.service.limits import device_slot, ensure_limits

    settings = load_settings(workspace)
    ensure_limits(settings)
    prefect_internal = logging.getLogger("prefect._internal.concurrency")  # does not propagate
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    prefect_internal.addHandler(handler)
    entered = []

    def queued():
        with device_slot(settings):
            entered.append(True)

    try:
        with caplog.at_level(logging.INFO, logger="forgetflow.service.limits"):
            with device_slot(settings):
                thread = threading.Thread(target=queued)
                thread.start()
                time.sleep(4.0)  # the queued job's first ask gets a 423 (slot taken), then waits the Retry-After
                assert not entered
            thread.join(60)
    finally:
        prefect_internal.removeHandler(handler)
    assert entered, "the queued job got the slot once it was free"
    assert [r.getMessage() for r in records if r.levelno >= logging.ERROR] == [], "a taken slot is a wait, not an error"
    waits = [r.getMessage() for r in caplog.records if "waiting for concurrency slot" in r.getMessage()]
    assert len(waits) == 1 and "forgetflow-device-" in waits[0]


@pytest.mark.flow
def test_a_missing_limit_is_an_error_not_unlimited(prefect_harness, workspace, monkeypatch):
    from forgetflow.service.limits import device_slot

    monkeypatch.setenv("FORGETFLOW_DEVICE_LIMIT", "forgetflow-test-never-created")
    with pytest.raises(Exception, match="forgetflow-test-never-created"):
        with device_slot(load_settings(workspace)):
            pass


def test_background_announcements_all_reach_the_server(workspace, event_sink):
    from forgetflow.requests.intake import open_ledger, submit
    from forgetflow.service.events import flush_announcements

    settings, ledger = load_settings(workspace), open_ledger(load_settings(workspace))
    results = [submit(settings, {"request_id": f"bg-{i}", "kind": "samples", "ids": [i], "reason": "r", "requested_by": "me"}, ledger=ledger) for i in range(50)]
    assert all(r.announcement.queued == 1 for r in results)
    assert flush_announcements(10)
    sent = [event["payload"]["request_id"] for _, batch in event_sink for event in batch]
    assert sorted(sent) == sorted(f"bg-{i}" for i in range(50)), "every event arrives exactly once"


def test_a_server_forgetflow_starts_keeps_leases_in_files_and_its_ui_on_its_port(workspace, monkeypatch):
    """The UI finds the API on the server's own --port (issue 23: it called 4200), and leases
    outlive the server process (a restarted server still knows a killed run's lease)."""
    from forgetflow.service.server import LEASE_STORAGE, server_environment
    from forgetflow.service.slots import LEASES_ENV

    monkeypatch.delenv("PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE", raising=False)
    env = server_environment(load_settings(workspace), host="127.0.0.1", port=4311)
    assert env["PREFECT_SERVER_API_PORT"] == "4311" and env["PREFECT_SERVER_API_HOST"] == "127.0.0.1"
    assert env["PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE"] == LEASE_STORAGE and LEASES_ENV not in env
