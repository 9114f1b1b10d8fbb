"""Eval datasets: rows from JSONL, CSV, Parquet, a DataFrame, a list, or recorded threads.

A dataset is a list of items (dicts) with a content hash over their canonical JSON, so a run
names exactly the data it used. An item's ``input`` is what is sent; ``conversation`` (a list of
``{"role", "content"}``), when present, is the history before it (a recorded thread's earlier
turns). The seed report's shape (``{"input", "expected_type", "expected_response_contains"}``)
is just such an item.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ChatLabError


@dataclass
class Dataset:
    """Items to evaluate, named by the hash of their content."""

    items: list[dict[str, Any]]
    name: str = "dataset"
    source: str = ""
    hash: str = field(init=False)

    def __post_init__(self) -> None:
        for i, item in enumerate(self.items):
            if not isinstance(item, dict):
                raise ChatLabError(f"Item {i} of {self.name!r} is a {type(item).__name__}; each item is an object such as {{\"input\": \"...\"}}.")
            if not isinstance(item.get("input"), str) or not item["input"].strip():
                raise ChatLabError(f"Item {i} of {self.name!r} has no input text: each item needs \"input\" (what is sent), e.g. "
                                   '{"input": "Where is my order?", "expected_type": "shipping"}.')
        if not self.items:  # a run of nothing would report 0/0 passed, as if all were well
            raise ChatLabError(f"The dataset {self.name!r} has no items; each line or row is one item such as {{\"input\": \"...\"}}.")
        self.hash = content_hash(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        return f"Dataset({self.name!r}, {len(self.items)} items, hash {self.hash[:12]})"

    def df(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self.items)


def content_hash(items: Sequence[dict[str, Any]]) -> str:
    canonical = "\n".join(json.dumps(item, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str) for item in items)
    return hashlib.sha256(canonical.encode()).hexdigest()


def load_dataset(source: Any, *, name: str | None = None) -> Dataset:
    """A ``Dataset`` from a path (``.jsonl``, ``.json``, ``.csv``, ``.parquet``), a DataFrame,
    a list of dicts, or a ``Dataset`` (as it is)."""
    if isinstance(source, Dataset):
        return source
    if isinstance(source, str | Path):
        path = Path(source).expanduser()
        if not path.is_file():
            raise ChatLabError(f"There is no dataset file {str(path)!r}.")
        try:
            items = _read(path)
        except (ValueError, OSError) as exc:  # JSON, CSV and Parquet parsers, a file that is not UTF-8 or cannot be read
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ChatLabError(f"Cannot read the dataset {path.name}: {reason}.") from None
        return Dataset(items, name or path.stem, str(path))
    if hasattr(source, "to_dict") and hasattr(source, "columns"):  # a pandas DataFrame
        return Dataset([_plain(row) for row in source.to_dict(orient="records")], name or "dataframe", "DataFrame")
    if isinstance(source, dict):
        raise ChatLabError("A dataset is a list of items; this is one item: give [item].")
    if isinstance(source, Iterable):
        return Dataset([dict(item) if isinstance(item, dict) else item for item in source], name or "items", "list")
    raise ChatLabError(f"A dataset is a path, a DataFrame or a list of items, not {type(source).__name__}.")


def _read(path: Path) -> list[dict[str, Any]]:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        items = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                items.append(json.loads(line))
            except ValueError as exc:
                raise ChatLabError(f"{path.name} line {n} is not JSON: {exc}.") from None
        return [_openai_row(item) for item in items]
    if suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        return [_openai_row(item) for item in (data if isinstance(data, list) else [data])]
    if suffix in (".csv", ".parquet"):
        import pandas as pd

        frame = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
        return [_plain(row) for row in frame.to_dict(orient="records")]
    raise ChatLabError(f"{path.name}: a dataset is .jsonl, .json, .csv or .parquet.")


def _openai_row(item: Any) -> dict[str, Any]:
    """OpenAI evals' JSONL rows wrap the item: ``{"item": {...}, "sample"?: {...}}``."""
    if isinstance(item, dict) and isinstance(item.get("item"), dict) and set(item) <= {"item", "sample"}:
        return {**item["item"], **({"_sample": item["sample"]} if "sample" in item else {})}
    return item if isinstance(item, dict) else {"input": str(item)}


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """A DataFrame row as JSON values (NaN as missing, numpy numbers as numbers, JSON text as JSON)."""
    out: dict[str, Any] = {}
    for key, given in row.items():
        if given is None or (isinstance(given, float) and given != given):
            continue
        value = given.item() if hasattr(given, "item") and not isinstance(given, list | dict) else given
        if isinstance(value, str) and value[:1] in "[{":
            try:
                value = json.loads(value)
            except ValueError:
                pass
        out[str(key)] = value
    return out


def from_threads(turns: Any) -> Dataset:
    """Multi-turn items from recorded threads (``lab.turns_df()`` rows): each thread's last user
    message is the input, its earlier exchanges the conversation. A turn that answered a click
    (an approval) rather than a message has no exchange; its reply is its exchange's already."""
    items = []
    exchanges = turns[turns["exchange"].notna()]
    for thread_id, group in exchanges.sort_values(["thread_id", "exchange"]).groupby("thread_id", sort=False):
        rows = group.to_dict(orient="records")
        conversation = [m for r in rows[:-1] for m in ({"role": "user", "content": r["user_text"] or ""},
                                                          {"role": "assistant", "content": r["reply_text"] or ""})]
        last = rows[-1]
        items.append({"input": last["user_text"], "conversation": conversation, "thread_id": thread_id,
                      "recorded_reply": last["reply_text"]})
    if not items:
        raise ChatLabError("These turns hold no recorded exchange (a user's message and its reply), so there is no item to make.")
    return Dataset(items, "threads", "recorded threads")
