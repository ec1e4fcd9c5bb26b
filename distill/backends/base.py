"""The async interface every backend implements, and the two kinds of failure."""

from __future__ import annotations

from typing import Protocol

from distill.request import Request, Response


class TransientError(Exception):
    """Worth retrying: rate limit, server error, timeout, dropped connection, garbled reply."""

    def __init__(self, message: str, retry_after: float | None = None, kind: str = "error"):
        super().__init__(message)
        self.retry_after = retry_after
        self.kind = kind  # counted in stats: "http_429", "timeout", "connection", "malformed", ...


class PermanentError(Exception):
    """Retrying will not help: bad key, unknown model."""


class RejectedError(PermanentError):
    """The backend refuses this one request (HTTP 400/413/422), not every request."""


class Backend(Protocol):
    name: str
    # How many requests the backend can usefully serve at once (None: no limit of its own).
    max_concurrency: int | None

    def model_id(self) -> str:
        """The model name that goes into requests (and so into cache keys)."""

    async def complete(self, request: Request) -> Response:
        """Answer one request, or raise TransientError / PermanentError."""

    async def aclose(self) -> None: ...
