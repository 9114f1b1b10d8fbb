"""The processes waiting for one DuckDB file, served in the order they came.

Once a file is free DuckDB gives it to whichever process opens it first, so with three or more
processes a waiter can lose that race again and again (a load test of four saw waits of 35 s).
A waiter therefore takes a ticket, ``<file>.queue/<arrival>-<pid>-<n>``, and touches it each time
it retries; a process opens the file only when no live ticket came before its own. A ticket not
touched for ``FRESH`` seconds belongs to a process that stopped waiting or died, and is passed over.
Where the directory cannot be written, waiting works as before, only not in order.
"""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

FRESH = 0.5  # seconds; waiters retry at least every 0.1 s and touch their ticket each time
STALE = 30.0  # a ticket this old is removed by whoever sees it
_NUMBERS = itertools.count()


class WaitQueue:
    def __init__(self, path: str) -> None:
        self.dir = Path(path + ".queue")
        self._ticket: Path | None = None

    def join(self) -> None:
        """Take a ticket (once per wait), or show that this process still waits."""
        for _ in range(2):  # another process may remove the empty directory in between
            try:
                if self._ticket is None:
                    self.dir.mkdir(exist_ok=True)
                    self._ticket = self.dir / f"{time.time_ns():020d}-{os.getpid()}-{next(_NUMBERS)}"
                self._ticket.touch()
                return
            except FileNotFoundError:
                self._ticket = None
            except OSError:
                self._ticket = None
                return

    def ahead(self) -> bool:
        """Whether a live waiter came before this one (every live waiter, without a ticket)."""
        mine = self._ticket.name if self._ticket is not None else "~"  # "~" sorts after every ticket
        try:
            entries = os.scandir(self.dir)
        except OSError:
            return False
        now = time.time()
        with entries:
            for entry in entries:
                if entry.name >= mine:
                    continue
                try:
                    age = now - entry.stat().st_mtime
                except OSError:
                    continue
                if age < FRESH:
                    return True
                if age > STALE:
                    Path(entry.path).unlink(missing_ok=True)
        return False

    def leave(self) -> None:
        """Give the ticket back (the file was had, or the wait given up)."""
        if self._ticket is None:
            return
        try:
            self._ticket.unlink(missing_ok=True)
            self.dir.rmdir()  # only when empty: the last waiter tidies up
        except OSError:
            pass
        self._ticket = None
