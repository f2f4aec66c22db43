"""Names shared by events, limits and deployments: one workspace path -> one short stable ID."""

from __future__ import annotations

import hashlib
import re

from forgetflow.settings import Settings


def workspace_id(settings: Settings) -> str:
    """12 hex characters of the workspace path's SHA-256: events and limits of two workspaces never mix."""
    return hashlib.sha256(str(settings.workspace).encode()).hexdigest()[:12]


def slug(text: str) -> str:
    """Lower-case letters, digits and dashes: safe in Prefect deployment and limit names."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
