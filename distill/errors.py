"""Errors a user can act on. The CLI prints them as one line and exits non-zero."""


class DistillError(Exception):
    """A problem with the user's input or environment, reported without a traceback."""

    exit_code = 1


class ConfigError(DistillError):
    """A bad option, config file or key."""

    exit_code = 2


class InputError(DistillError):
    """An input file or dataset that cannot be used."""


class BackendError(DistillError):
    """A backend failed for good: bad credentials, unknown model, retries exhausted."""


class RequestRejected(BackendError):
    """The backend refused one request (e.g. a prompt past the context length); other items go on."""


class StoppedEarly(DistillError):
    """The run stopped before finishing (budget reached); everything done is kept."""

    exit_code = 3


class WriteFailed(DistillError):
    """A write to the run directory failed (no space, no permission): the run stops, keeping what is on disk."""


class DiskFull(WriteFailed):
    """A write failed for lack of space."""


_FULL = {"ENOSPC", "EFBIG", "EDQUOT"}
_DENIED = {"EACCES", "EPERM", "EROFS"}


def write_error(err: BaseException, path) -> DistillError:
    """The one-line error for a failed write to `path`: the user's disk or permissions, not a bug."""
    import errno
    import sqlite3

    name = errno.errorcode.get(getattr(err, "errno", None) or 0, "")
    text = str(err).lower()
    if name in _FULL or "disk is full" in text or "disk i/o error" in text or "file too large" in text:
        return DiskFull(f"disk full writing {path}: free some space, then run the same command again to resume "
                        "(everything written so far is kept)")
    if name in _DENIED or "readonly" in text or "read-only" in text:
        return WriteFailed(f"cannot write {path}: {'read-only file system' if name == 'EROFS' else 'permission denied'}")
    if isinstance(err, sqlite3.DatabaseError) and ("not a database" in text or "malformed" in text):
        return DistillError(f"{path} is damaged ({err}): move it away and run the same command again to redo only the "
                            "items that records.jsonl does not hold, or start over with --fresh")
    reason = getattr(err, "strerror", None) or str(err)
    return WriteFailed(f"cannot write {path}: {reason}")


def warn(message: str) -> None:
    """A warning on stderr, one line, secrets redacted."""
    import sys

    from distill.secrets import redact

    print(f"warning: {redact(' '.join(str(message).split()))}", file=sys.stderr)
