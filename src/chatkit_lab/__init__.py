"""chatkit-lab: a real ChatKit chat inside a Jupyter notebook, on an in-kernel server and DuckDB."""

from .context import RequestContext
from .errors import ChatLabError
from .lab import ChatLab, Turn
from .logs import merge
from .models import MirrorModel
from .server import LabServer
from .store.duckdb import DuckDBStore
from .widget import ChatWidget

__version__ = "0.1.0"

__all__ = ["ChatLab", "ChatLabError", "ChatWidget", "DuckDBStore", "LabServer", "MirrorModel", "RequestContext", "Turn", "__version__", "merge"]
