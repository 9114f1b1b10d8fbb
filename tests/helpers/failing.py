"""A store method that fails once, as a full disk or a lost connection would, then works."""

from typing import Any

from chatkit_lab.errors import ChatLabError


def fail_once(monkeypatch: Any, obj: Any, name: str, message: str = "The disk is full.") -> list[Any]:
    """Make ``obj.name`` (an async method) raise ``ChatLabError(message)`` on its first call;
    returns the list of each call's first argument."""
    calls: list[Any] = []
    original = getattr(obj, name)

    async def failing(first: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(first)
        if len(calls) == 1:
            raise ChatLabError(message)
        return await original(first, *args, **kwargs)

    monkeypatch.setattr(obj, name, failing)
    return calls
