"""What an OpenAI-compatible endpoint's failures mean for distill: retried, rejected or permanent.

One mapping of HTTP statuses and client errors, shared by direct calls (openai_backend) and
the lines of a provider batch (openai_batch).
"""

from __future__ import annotations

import email.utils
import errno
import time

import openai

from distill.backends.base import PermanentError, RejectedError, TransientError

RETRYABLE_STATUS = {408, 409, 425, 429}


def parse_retry_after(headers) -> float | None:
    """Seconds to wait from Retry-After (seconds or an HTTP date) or retry-after-ms."""
    if headers is None:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def status_error(status: int, detail: str, where: str, retry_after: float | None = None,
                 model: str | None = None) -> Exception:
    """The backend error for an HTTP status: retried (408, 409, 425, 429, 5xx), the request
    rejected (400, 413, 422: the item fails, the run goes on), or permanent (the run stops)."""
    if status in RETRYABLE_STATUS or status >= 500:
        return TransientError(f"HTTP {status} from {where}: {detail}", retry_after, kind=f"http_{status}")
    if status in (401, 403):
        return PermanentError(f"{where} refused the API key (HTTP {status}): {detail}")
    if status == 404:
        what = f"no model {model!r}" if model else "no such model"
        return PermanentError(f"{where} has {what} or no such route (HTTP 404): {detail}")
    if status in (400, 413, 422):
        return RejectedError(f"{where} rejected the request (HTTP {status}): {detail}")
    return PermanentError(f"{where} failed the request (HTTP {status}): {detail}")


def api_error(err: Exception, where: str, model: str | None = None) -> Exception:
    """The backend error for what the openai client raised, or for a reply it could not read."""
    if isinstance(err, openai.APITimeoutError):
        return TransientError(f"timeout from {where}", kind="timeout")
    if isinstance(err, openai.APIConnectionError):
        return TransientError(f"connection to {where} failed: {err}", kind="connection")
    if isinstance(err, openai.APIStatusError):
        return status_error(err.status_code, _short(err), where, parse_retry_after(err.response.headers), model)
    return TransientError(f"malformed reply from {where}: {type(err).__name__}: {err}", kind="malformed")


def connection_refused(err: BaseException) -> bool:
    """Whether a connection error is the server's port refusing it (nothing listening there):
    somewhere in its chain of causes, a ConnectionRefusedError or errno ECONNREFUSED."""
    seen: set[int] = set()
    todo: list[BaseException] = [err]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ConnectionRefusedError) or getattr(current, "errno", None) == errno.ECONNREFUSED:
            return True
        todo += [e for e in (current.__cause__, current.__context__, *current.args) if isinstance(e, BaseException)]
        todo += [e for e in getattr(current, "exceptions", ()) if isinstance(e, BaseException)]  # an exception group
    return False


def _short(err: openai.APIStatusError) -> str:
    message = getattr(err, "message", None) or str(err)
    return " ".join(str(message).split())[:300]
