"""Deletion requests: the request model, intake (API, CLI, inbox), the append-only ledger, resolution."""

from forgetflow.requests.ledger import EVENTS, Ledger, RequestStatus, Verification
from forgetflow.requests.schema import ALLOWED_GOALS, DeletionRequest, RequestError

__all__ = ["ALLOWED_GOALS", "EVENTS", "DeletionRequest", "Ledger", "RequestError", "RequestStatus", "Verification"]
