"""Error kinds every layer raises: a user's mistake, or a passing fault worth another try."""

from __future__ import annotations


class UserError(ValueError):
    """Something the user must fix (params, data, a missing step): shown without a traceback,
    never retried."""


class ConfigError(UserError):
    """A params.yaml value is missing, unknown or of the wrong kind."""


class DataError(UserError):
    """Input data (a table, a file, a corpus, a scenario set) cannot be used as it is."""


class DivergedError(UserError):
    """A model's training loss or weights stopped being finite numbers (NaN or infinity)."""


class MissingStepError(UserError):
    """A stage ran before the stage whose output it reads (e.g. evaluate before train)."""


# HTTP statuses a tracking or orchestration server answers while it is briefly unable to.
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


def is_transient(error: BaseException) -> bool:
    """Returns whether `error` is a passing I/O or network fault that a retry may clear.

    User errors and programming errors (TypeError, KeyError, ...) are never transient.
    """
    if isinstance(error, UserError):
        return False
    if isinstance(error, (ConnectionError, TimeoutError)):
        return True
    if isinstance(error, OSError) and not isinstance(
        error, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)
    ):
        return True
    name = type(error).__name__
    module = type(error).__module__
    if module.startswith(("requests", "urllib3", "httpx", "httpcore")) and (
        "Timeout" in name or "Connect" in name or "Connection" in name
    ):
        return True
    if name in ("MlflowException", "RestException"):
        code = str(getattr(error, "error_code", ""))
        if code in ("TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED"):
            return True
        # Only a server's answer has a meaningful HTTP status: a plain MlflowException raised
        # locally defaults to INTERNAL_ERROR (500) for mistakes no retry fixes.
        if name == "RestException":
            status = getattr(error, "get_http_status_code", lambda: None)()
            return status in TRANSIENT_STATUSES
    cause = error.__cause__ or error.__context__
    return cause is not None and cause is not error and is_transient(cause)
