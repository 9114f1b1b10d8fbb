"""The lab's own event loop, on a daemon thread.

The server, its store connection and every agent run live here, so a reply keeps streaming
while the kernel runs other cells, and no caller ever nests or patches another loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from .errors import LAB_CLOSED, ChatLabError, LabClosedError

T = TypeVar("T")
log = logging.getLogger("chatkit_lab")


def _exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    task = context.get("task")
    if isinstance(task, asyncio.Task) and not task.done() and "exception" not in context:
        # A task collected while still pending: ChatKit's stream merge leaves its queue reader so
        # when a reply is stopped. Nothing is lost; it belongs in the debug log, not in a cell.
        log.debug("a stopped stream left a pending task: %r", task)
        return
    if isinstance(context.get("exception"), StopAsyncIteration):
        # The same merge's reader of a stream that had already ended: nothing was lost either.
        log.debug("a finished stream's reader was never awaited: %r", task)
        return
    loop.default_exception_handler(context)


def new_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop where it is installed (Linux and macOS), else asyncio's. A turn makes
    dozens of tasks and hundreds of callbacks, whose scheduling uvloop does in C: a replay or an
    eval run takes about 10% less CPU."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class LoopThread:
    def __init__(self, name: str = "chatkit-lab") -> None:
        self.loop = new_loop()
        self.loop.set_exception_handler(_exception_handler)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self.loop.is_closed()

    def on_loop(self) -> bool:
        return threading.current_thread() is self._thread

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        if not self.running:
            coro.close()
            raise LabClosedError(LAB_CLOSED)
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` on the lab's loop from any other loop (a notebook cell's, say)."""
        if self.on_loop():
            return await coro
        return await asyncio.wrap_future(self.submit(coro))

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the lab's loop and wait for it (for scripts: the ``_sync`` methods)."""
        if self.on_loop():
            coro.close()
            raise ChatLabError("A _sync method was called from the lab's own loop; use the async one with await.")
        return self.submit(coro).result(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        if not self.running:
            return

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.loop.shutdown_asyncgens()

        try:
            self.submit(cancel_all()).result(timeout)
        except (concurrent.futures.TimeoutError, ChatLabError):
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self.loop.close()
