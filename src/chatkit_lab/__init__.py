"""chatkit-lab: a real ChatKit chat inside a Jupyter notebook, on an in-kernel server and DuckDB."""

import logging

from ._version import __version__
from .context import RequestContext
from .errors import ChatLabError
from .lab import ChatLab
from .logs import merge
from .models import MirrorModel
from .server import LabServer
from .store.duckdb import DuckDBStore
from .transport.limits import Limits
from .turn import Turn
from .widget import ChatWidget

# A library's logs go where the application sends them: without a handler of the user's, Python's
# last-resort handler would print them (tracebacks included) into the running notebook cell.
logging.getLogger("chatkit_lab").addHandler(logging.NullHandler())

__all__ = ["ChatLab", "ChatLabError", "ChatWidget", "DuckDBStore", "LabServer", "Limits", "MirrorModel", "RequestContext", "Turn", "__version__", "merge"]
