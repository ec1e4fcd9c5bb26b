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
