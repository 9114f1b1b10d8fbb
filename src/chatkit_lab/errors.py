"""One error base class; every message says what happened and what to do."""


class ChatLabError(Exception):
    """Base class of every error chatkit-lab raises on purpose."""


class DatabaseBusyError(ChatLabError):
    """Another process kept the DuckDB file locked for longer than we wait."""


class BadRequestError(ChatLabError):
    """A ChatKit request that cannot be parsed or validated (HTTP 400)."""


class ModelBackendError(ChatLabError):
    """A model provider failed or is not configured; the message says how to fix it."""
