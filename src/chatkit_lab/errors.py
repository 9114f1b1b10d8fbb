"""One error base class; every message says what happened and what to do.

Each class carries the HTTP status and the ``code`` a client receives for it, and whether a
retry can help; the transports map errors by these types, never by message text.
"""

from chatkit.errors import CustomStreamError
from chatkit.store import NotFoundError as _ChatKitNotFound


class ChatLabError(Exception):
    """Base class of every error chatkit-lab raises on purpose: a request or setting it refuses."""

    status = 400
    code = "bad_request"
    retryable = False


class InvalidRequestError(ChatLabError):
    """The request is not one this server can act on (its shape, or the thread's state)."""

    code = "invalid_request"


class NotSupportedError(ChatLabError):
    """The request asks for something this server does not offer."""

    status = 501
    code = "not_supported"


class AuthError(ChatLabError):
    """A request without a valid token; the message says why (never echoing the token)."""

    status = 401
    code = "unauthorized"


class StreamSentenceError(ChatLabError, CustomStreamError):
    """An error whose sentence (and retry advice) a ChatKit stream shows as it is, wherever in
    the turn it is raised (ChatKit turns other exceptions into a bare "stream error")."""

    def __init__(self, message: str) -> None:
        ChatLabError.__init__(self, message)
        self.message, self.allow_retry = message, self.retryable


class ConflictError(StreamSentenceError):
    """A new item arrived with the id of an item already stored; nothing was overwritten."""

    status = 409
    code = "conflict"


class DatabaseBusyError(StreamSentenceError):
    """Another process kept the DuckDB file locked for longer than we wait: try again."""

    status = 503
    code = "database_busy"
    retryable = True


class DatabaseUnavailableError(StreamSentenceError):
    """The database server cannot be used (a wrong URL, refused, missing, no rights, restarting)."""

    status = 503
    code = "database_unavailable"
    retryable = True


class ForbiddenError(StreamSentenceError):
    """The database refused this role the change (a workshop student writing what is not theirs)."""

    status = 403
    code = "forbidden"


LAB_CLOSED = "This lab was closed (lab.close()): run the cell that creates it again."


class LabClosedError(ChatLabError):
    """The lab was closed; its chats and methods no longer work."""

    status = 503
    code = "lab_closed"


class ConfigurationError(ChatLabError):
    """The lab or server is set up wrongly (a bug of the caller, not of the request)."""

    status = 500
    code = "misconfigured"


class NotFoundError(ChatLabError, _ChatKitNotFound):
    """No such thread, item or attachment for this user (another user's ids look the same)."""

    status = 404
    code = "not_found"


_BY_CODE = {
    cls.code: cls
    for cls in (InvalidRequestError, NotSupportedError, AuthError, DatabaseBusyError, DatabaseUnavailableError, LabClosedError, ConfigurationError,
                NotFoundError, ConflictError, ForbiddenError)
}


def error_for(code: str, message: str) -> ChatLabError:
    """The typed error a reply's ``{"error": {"code", "message"}}`` stands for."""
    return _BY_CODE.get(code, ChatLabError)(message)
