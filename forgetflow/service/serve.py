"""`forgetflow serve`: the deployments of one workspace, served until interrupted.

Start-up order matters: the Prefect server first (so PREFECT_API_URL is known before Prefect is
imported), then the concurrency limits, the deployments (their schedules and the urgent trigger),
a catch-up run for urgent requests that arrived while nothing was serving, and the inbox watcher.
Schedules are not paused on shutdown, so a restart picks up where the last one stopped, and runs
that fell due meanwhile run when the runner is back.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timezone

from forgetflow.settings import Settings

# Served runs are polled for; a short interval keeps an urgent request's latency low.
RUNNER_POLL_S = "2"


@dataclass
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 4200
    watch_inbox: bool = True
    catch_up: bool = True
    on_event: object = field(default=print)  # one-line progress messages


def prepare_environment(settings: Settings, options: ServeOptions):
    """Start (or find) the server and point this process at it; returns the LocalServer or None."""
    from forgetflow.service.server import lease_environment, server_environment, start_local_server, wait_healthy

    for key, value in settings.prefect_environment().items():
        os.environ[key] = value
    os.environ.setdefault("PREFECT_RUNNER_POLL_FREQUENCY", RUNNER_POLL_S)
    if os.environ.get("PREFECT_API_URL"):
        wait_healthy(os.environ["PREFECT_API_URL"])
        return None
    server = start_local_server(settings, host=options.host, port=options.port)
    os.environ["PREFECT_API_URL"] = server.api_url
    if server.process is not None:  # ours: its leases are in files the flow runs can check (slots.py)
        os.environ.update(lease_environment(settings, server_environment(settings)))
    return server


def pending_urgent(settings: Settings) -> list[str]:
    from forgetflow.deletion.pipeline import PENDING_STATES
    from forgetflow.requests.intake import open_ledger

    statuses = open_ledger(settings).statuses().values()
    return [s.request_id for s in statuses if s.state in PENDING_STATES and (s.received or {}).get("urgent")]


def catch_up(settings: Settings) -> str | None:
    """One urgent run for urgent requests recorded while nothing was serving (their events had no
    trigger to meet). Returns the flow run's name, or None when nothing is waiting."""
    waiting = pending_urgent(settings)
    if not waiting:
        return None
    from prefect.deployments import run_deployment

    from forgetflow.service.deployments import deployment_names

    run = run_deployment(deployment_names(settings).full("urgent"), parameters={"workspace": str(settings.workspace), "progress": False, "trigger": waiting[0]}, timeout=0)
    return run.name


class _Signals:
    """SIGTERM (a service manager, `kill`) and SIGINT (Ctrl-C), from the first line of `serve` on.

    Once the runner has started, both start its graceful shutdown: it cancels the in-flight runs
    and waits up to 30 s for them to exit, so they release their concurrency slots, and a cancelled
    batch resumes from `.forgetflow/batches/` next time. (A KeyboardInterrupt would cancel the
    runner's event loop instead, which SIGKILLs the runs: they stay RUNNING and hold their slots
    until the leases expire.) Before that, during start-up, a signal is only recorded: raised as
    KeyboardInterrupt inside Prefect's client calls it was swallowed, and `serve` went on serving
    (seen under load). Start-up checks the record between steps and does not start the runner; a
    runner that started meanwhile is stopped by `watch` as soon as it is up. A second signal while
    the runner shuts down exits at once, as Prefect's own handler does."""

    def __init__(self):
        import signal

        self.requested, self.runner = False, None
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, self._handle)

    def _handle(self, *_):
        self.requested = True
        runner = self.runner
        if runner is not None and runner.started:
            runner.handle_sigterm()  # the first starts the graceful shutdown, a second exits at once

    def watch(self, runner) -> None:
        """From now on signals go to this runner; a signal that came before it was up stops it then."""
        import threading
        import time

        self.runner = runner

        def stop_when_up():
            while not runner.started and self.runner is runner:
                time.sleep(0.1)
            if self.requested and not runner.stopping:
                runner.handle_sigterm()

        threading.Thread(target=stop_when_up, name="forgetflow-serve-signals", daemon=True).start()


def serve(settings: Settings, options: ServeOptions) -> None:
    """Serve until SIGINT/SIGTERM; stops the server it started and the watcher on the way out."""
    signals = _Signals()
    server = prepare_environment(settings, options)
    say = options.on_event
    watcher = None
    try:
        import asyncio

        from prefect.exceptions import TerminationSignal
        from prefect.runner import Runner

        from forgetflow.params import load_params
        from forgetflow.service.config import service_params
        from forgetflow.service.deployments import deployment_names, served_deployments
        from forgetflow.service.limits import ensure_limits
        from forgetflow.service.server import write_service_file
        from forgetflow.service.slots import LEASES_ENV
        from forgetflow.service.watcher import InboxWatcher

        if signals.requested:  # stopped while the server started
            say("stopped before serving")
            return
        service = service_params(load_params(settings.params_path))
        limits = ensure_limits(settings)
        names = deployment_names(settings)
        runner = Runner(name=f"forgetflow-{names.batch.removeprefix('batch-')}", pause_on_shutdown=False)
        for deployment in served_deployments(settings):
            runner.add_deployment(deployment)
        write_service_file(settings, {
            "api_url": os.environ["PREFECT_API_URL"],
            "serve_pid": os.getpid(),
            "server_pid": server.process.pid if server and server.process else None,
            "lease_dir": os.environ.get(LEASES_ENV),
            "started_at": datetime.now(timezone.utc).isoformat(),
            "deployments": {"batch": names.full("batch"), "urgent": names.full("urgent")},
            "limits": limits,
        })
        schedule = f"every {service.batch_interval_s:g} s" if service.batch_interval_s else f"cron '{service.batch_cron}' ({service.timezone})"
        say(f"serving {settings.workspace} on {os.environ['PREFECT_API_URL']}")
        say(f"  {names.full('batch')}: {schedule}")
        say(f"  {names.full('urgent')}: on urgent `forgetflow.request.received` events")
        say(f"  limits (1 slot each): {', '.join(limits)}")
        if options.catch_up:
            run_name = catch_up(settings)
            if run_name:
                say(f"  urgent requests were waiting: started run {run_name}")
        if options.watch_inbox:
            watcher = InboxWatcher(settings, service.inbox_poll_s, on_report=lambda r: say(f"inbox: {len(r.processed)} recorded, {len(r.rejected)} rejected"))
            watcher.start()
            say(f"  watching the inbox every {service.inbox_poll_s:g} s")
        if not signals.requested:
            signals.watch(runner)
            try:
                asyncio.run(runner.start())
            except (KeyboardInterrupt, TerminationSignal):
                pass
        say("stopped (schedules stay active)")
    finally:
        if watcher is not None:
            watcher.stop()
        from forgetflow.service.server import clear_service_file

        clear_service_file(settings)
        if server is not None:
            server.stop()
