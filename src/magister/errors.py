"""Errors Magister raises on purpose: each says what went wrong and what to do next."""

from __future__ import annotations


class MagisterError(Exception):
    """Base class: the CLI prints these as one clean line instead of a traceback."""


class ConfigError(MagisterError):
    """A bad option, model spec or configuration value."""


class DataError(MagisterError):
    """Bad exam input. Names the file, and the line and field where they are known."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 field: str | None = None) -> None:
        self.path, self.line, self.field = path, line, field
        where = ":".join(str(p) for p in (path, line) if p is not None)
        prefix = f"{where}: " if where else ""
        suffix = f" (field '{field}')" if field else ""
        super().__init__(f"{prefix}{message}{suffix}")


class StoreError(MagisterError):
    """The store's server could not be reached or stopped answering (PostgreSQL): one line, the URL redacted."""


class BackendError(MagisterError):
    """A model backend failed: missing dependency, unreachable server, bad response.

    `partial` holds the completions of a batch that did finish (by position in the batch),
    so that the caller can store them before giving up.
    """

    partial: dict[int, object]

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.partial = {}


class RateLimitError(BackendError):
    """The server kept answering 429 after every retry."""
