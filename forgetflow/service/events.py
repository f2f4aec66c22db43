"""The `forgetflow.request.received` event: every intake path announces each recorded request.

The event carries the request ID and nothing else personal: the payload is `{"request_id": ...}`,
and the resource labels say which workspace it belongs to and whether it is urgent (the urgent
deployment's trigger matches on those labels). Event payloads are stored in Prefect's database and
shown in its UI, so sample and subject IDs never go there.

The ledger entry is written first; the event is a notification. When no Prefect server is running,
or it cannot be reached, nothing is lost: the next scheduled batch takes every pending request, and
`forgetflow serve` re-announces pending urgent requests when it starts.

Events are POSTed to the server's `/api/events` endpoint in one request per intake call (an inbox
sweep announces all its files at once). That is Prefect's documented route for producers, and it
keeps the intake path free of Prefect's client import and its background event worker.
"""

from __future__ import annotations

import logging
import atexit
import os
import queue
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from forgetflow.service.naming import workspace_id
from forgetflow.settings import Settings

REQUEST_RECEIVED = "forgetflow.request.received"
RESOURCE_PREFIX = "forgetflow.request."
URGENT_LABEL = "forgetflow.urgent"
WORKSPACE_LABEL = "forgetflow.workspace"
POST_TIMEOUT_S = 5.0

logger = logging.getLogger(__name__)


def request_event(settings: Settings, request_id: str, *, urgent: bool) -> dict:
    """One event in the JSON form the Prefect events API takes."""
    return {
        "id": str(uuid.uuid4()),
        "occurred": datetime.now(timezone.utc).isoformat(),
        "event": REQUEST_RECEIVED,
        "resource": {
            "prefect.resource.id": f"{RESOURCE_PREFIX}{request_id}",
            "prefect.resource.name": request_id,
            URGENT_LABEL: "true" if urgent else "false",
            WORKSPACE_LABEL: workspace_id(settings),
        },
        "payload": {"request_id": request_id},
    }


@dataclass
class Announcement:
    sent: int
    api_url: str | None
    error: str | None = None
    queued: int = 0  # handed to the background sender (announce(..., wait=False))

    @property
    def message(self) -> str:
        if self.api_url is None:
            return "no Prefect server configured: the request waits for the next batch"
        if self.error:
            return f"could not announce to {self.api_url} ({self.error}): the request waits for the next batch"
        if self.queued:
            return f"announcement queued for {self.api_url}"
        return f"announced to {self.api_url}"


def announce(settings: Settings, requests: list[tuple[str, bool]], *, wait: bool = True) -> Announcement:
    """Send one `forgetflow.request.received` event per (request ID, urgent); never raises.

    `wait=False` hands the events to a background thread that sends whatever has piled up as one
    batch (flushed at interpreter exit), so a program submitting many requests is not held up by
    one HTTP round trip each; a failed send is logged, and the requests wait for the next batch.
    """
    from forgetflow.service.server import known_api_url

    api_url = known_api_url(settings)
    if api_url is None or not requests:
        return Announcement(0, api_url)
    events = [request_event(settings, request_id, urgent=urgent) for request_id, urgent in requests]
    if not wait:
        _background().put(api_url, events)
        return Announcement(0, api_url, queued=len(events))
    return _post(api_url, events)


def _post(api_url: str, events: list[dict]) -> Announcement:
    import httpx

    try:
        response = _client(api_url).post("/events", json=events)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        logger.warning("could not announce %d request(s) to %s: %s", len(events), api_url, exc)
        return Announcement(0, api_url, error=f"{type(exc).__name__}: {exc}")
    return Announcement(len(events), api_url)


class _BackgroundSender:
    """A daemon thread that posts queued events, one batch per API URL per round."""

    def __init__(self):
        self._queue: queue.Queue = queue.Queue()
        self._pending = 0
        self._idle = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="forgetflow-events", daemon=True)
        self._thread.start()
        atexit.register(self.flush)

    def put(self, api_url: str, events: list[dict]) -> None:
        with self._idle:
            self._pending += 1
        self._queue.put((api_url, events))

    def flush(self, timeout_s: float = POST_TIMEOUT_S) -> bool:
        """Wait until every queued event was sent (or failed); False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout=timeout_s)

    def _run(self) -> None:
        while True:
            items = [self._queue.get()]
            while True:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            batches: dict[str, list[dict]] = {}
            for api_url, events in items:
                batches.setdefault(api_url, []).extend(events)
            for api_url, events in batches.items():
                _post(api_url, events)
            with self._idle:
                self._pending -= len(items)
                self._idle.notify_all()


_sender: _BackgroundSender | None = None


def _background() -> _BackgroundSender:
    global _sender
    with _clients_lock:
        if _sender is None:
            _sender = _BackgroundSender()
        return _sender


def flush_announcements(timeout_s: float = POST_TIMEOUT_S) -> bool:
    """Block until queued announcements are sent (True), or the timeout passes (False)."""
    return _sender.flush(timeout_s) if _sender is not None else True


_clients: dict[str, object] = {}
_clients_lock = threading.Lock()


def _client(api_url: str):
    """One keep-alive HTTP client per API URL and process: a new client per request (TLS context,
    TCP connection) would cap API intake at a few dozen requests per second."""
    import httpx

    with _clients_lock:
        client = _clients.get(api_url)
        if client is None:
            headers = {"Authorization": f"Bearer {os.environ['PREFECT_API_KEY']}"} if os.environ.get("PREFECT_API_KEY") else {}
            client = _clients[api_url] = httpx.Client(base_url=api_url.rstrip("/"), headers=headers, timeout=POST_TIMEOUT_S)
        return client
