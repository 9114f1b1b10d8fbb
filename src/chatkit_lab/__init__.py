"""chatkit-lab: a real ChatKit chat inside a Jupyter notebook, on an in-kernel server and DuckDB."""

from ._version import __version__
from .context import RequestContext
from .errors import ChatLabError
from .lab import ChatLab
from .logs import merge
from .models import MirrorModel
from .server import LabServer
from .store.duckdb import DuckDBStore
from .turn import Turn
from .widget import ChatWidget

__all__ = ["ChatLab", "ChatLabError", "ChatWidget", "DuckDBStore", "LabServer", "MirrorModel", "RequestContext", "Turn", "__version__", "merge"]
