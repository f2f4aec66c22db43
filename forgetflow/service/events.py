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
import os
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

    @property
    def message(self) -> str:
        if self.api_url is None:
            return "no Prefect server configured: the request waits for the next batch"
        if self.error:
            return f"could not announce to {self.api_url} ({self.error}): the request waits for the next batch"
        return f"announced to {self.api_url}"


def announce(settings: Settings, requests: list[tuple[str, bool]]) -> Announcement:
    """Send one `forgetflow.request.received` event per (request ID, urgent); never raises."""
    from forgetflow.service.server import known_api_url

    api_url = known_api_url(settings)
    if api_url is None or not requests:
        return Announcement(0, api_url)
    import httpx

    events = [request_event(settings, request_id, urgent=urgent) for request_id, urgent in requests]
    headers = {}
    if os.environ.get("PREFECT_API_KEY"):
        headers["Authorization"] = f"Bearer {os.environ['PREFECT_API_KEY']}"
    try:
        response = httpx.post(f"{api_url.rstrip('/')}/events", json=events, headers=headers, timeout=POST_TIMEOUT_S)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        logger.warning("could not announce %d request(s) to %s: %s", len(events), api_url, exc)
        return Announcement(0, api_url, error=f"{type(exc).__name__}: {exc}")
    return Announcement(len(events), api_url)
