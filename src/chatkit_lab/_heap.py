"""Batch work (replays, eval runs) with the heap that was there before it frozen.

A lab's process holds some 400,000 long-lived objects: the Agents SDK's, openai's and pydantic's
types and schemas, and whatever the notebook made. CPython's full collection scans every one of
them, and a batch that makes many objects triggers one every hundred turns or so: about 250 ms
each on a 2-core machine, a quarter of a 1,000-item eval run. ``gc.freeze()`` moves what exists
to a generation no collection scans; when the last batch ends, ``gc.unfreeze()`` gives it back,
so cyclic garbage among those objects is still collected, only later. A process that froze its
heap itself is left as it is: ``chatkit-lab serve`` does, once it has started (``settle``).
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_holders = 0  # batches running with the heap frozen by this module (labs on other threads count too)


@contextmanager
def frozen_heap() -> Iterator[None]:
    """The objects alive now are left out of garbage collection until the last holder is done."""
    global _holders
    with _lock:
        mine = _holders > 0 or gc.get_freeze_count() == 0
        if mine:
            if _holders == 0:
                gc.freeze()
            _holders += 1
    try:
        yield
    finally:
        if mine:
            with _lock:
                _holders -= 1
                if _holders == 0:
                    gc.unfreeze()


def settle() -> int:
    """For a process that only serves: what start-up made (imports, the lab, the warm-up turn)
    lives as long as the process, so it is frozen out of every later collection for good, after
    one last collection of its garbage. Returns how many objects are frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
