"""Errors a user can act on: each says what is wrong and what to do about it."""

from __future__ import annotations


class ForgetflowError(Exception):
    """Base class. `hint` tells the user how to fix the problem."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  -> {self.hint}"


class ConfigError(ForgetflowError):
    """Settings or params.yaml are invalid."""


class WorkspaceError(ForgetflowError):
    """The workspace cannot be used (missing, unwritable, not initialised)."""


class DataSourceError(ForgetflowError):
    """A dataset source is unknown or its files are missing."""


class DataIntegrityError(ForgetflowError):
    """Stored data does not match its recorded hashes (corruption or tampering)."""


class TrackingError(ForgetflowError):
    """The MLflow tracking or registry store cannot be used."""


class VersioningError(ForgetflowError):
    """A DVC operation failed."""


class UnsupportedModelError(ForgetflowError):
    """A model has a layer an algorithm cannot handle (e.g. PGU's layer statistics)."""
