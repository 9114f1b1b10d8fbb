"""One error base class; every message says what happened and what to do."""


class ChatLabError(Exception):
    """Base class of every error chatkit-lab raises on purpose."""


class DatabaseBusyError(ChatLabError):
    """Another process kept the DuckDB file locked for longer than we wait."""
