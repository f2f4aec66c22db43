"""The inbox watcher of `forgetflow serve`: a thread that sweeps `data/requests/inbox/` every
`service.inbox_poll_s` seconds, so a dropped file is recorded (and announced) without anyone
running `forgetflow request inbox`. A sweep that fails is logged and retried on the next tick."""

from __future__ import annotations

import logging
import threading

from forgetflow.settings import Settings

logger = logging.getLogger(__name__)


class InboxWatcher(threading.Thread):
    def __init__(self, settings: Settings, poll_s: float, on_report=None):
        super().__init__(name="forgetflow-inbox-watcher", daemon=True)
        self.settings = settings
        self.poll_s = poll_s
        self.on_report = on_report  # called with each non-empty InboxReport (e.g. to print it)
        self.sweeps = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        from forgetflow.requests.intake import process_inbox

        while not self._stop_event.is_set():
            try:
                report = process_inbox(self.settings)
                self.sweeps += 1
                if (report.processed or report.rejected) and self.on_report is not None:
                    self.on_report(report)
            except Exception:  # noqa: BLE001 - a watcher must outlive one bad sweep
                logger.exception("inbox sweep failed; retrying in %.0f s", self.poll_s)
            self._stop_event.wait(self.poll_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop_event.set()
        self.join(timeout_s)
