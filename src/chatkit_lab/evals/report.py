"""A stored eval run as a notebook reads it: the summary, one row per item, and an HTML report.

``EvalRun`` is loaded once from the eval tables (``load_run``); ``df()`` is one row per item
(input, answer, thread, latency, tokens, cost, mean score, passed, and each grader's score),
``results`` one row per item and grader, and a notebook shows the report: pass rate per grader,
the worst items, cost and latency.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ChatLabError
from .datasets import Dataset
from .runs import summary

if TYPE_CHECKING:
    import pandas as pd

ITEMS_SQL = """
    SELECT i.item_index, d.item ->> 'input' AS input, d.item::VARCHAR AS item, i.item_hash, i.thread_id, i.turn_id, i.trace_id, i.status, i.output_text,
           i.latency_ms, i.model, i.input_tokens, i.output_tokens, i.cost_usd, i.error
    FROM eval_items i JOIN eval_runs r USING (run_id) JOIN eval_dataset_items d ON d.dataset_hash = r.dataset_hash AND d.item_index = i.item_index
    WHERE i.run_id = ? ORDER BY i.item_index"""
RESULTS_SQL = "SELECT item_index, grader_name, grader_type, score, passed, error, info FROM eval_results WHERE run_id = ? ORDER BY item_index, grader_name"


@dataclass
class EvalRun:
    """One stored run: ``id``, ``summary`` (OpenAI's shape), ``items`` and ``results`` frames
    (``results.unit_score``: the score on 0–1, a ``score_model``'s by its range)."""

    id: str
    summary: dict[str, Any]
    target: dict[str, Any]
    items: pd.DataFrame
    results: pd.DataFrame

    @property
    def name(self) -> str:
        return str(self.summary["name"])

    @property
    def pass_rate(self) -> float:
        """The share of items that passed every grader (errored items count as not passed)."""
        counts = self.summary["result_counts"]
        return counts["passed"] / counts["total"] if counts["total"] else 0.0

    @property
    def mean_score(self) -> float:
        """The mean of every grader's score over every item, each on 0–1 (a ``score_model``'s
        score by its range; errored results score 0)."""
        return float(self.results.unit_score.mean()) if len(self.results) else 0.0

    def df(self) -> pd.DataFrame:
        """One row per item: what was asked and answered, its cost, ``score`` (the mean over the
        graders, each on 0–1), ``passed`` (all passed), and each grader's own score in a column
        named after it."""
        return self.items

    def per_grader(self) -> pd.DataFrame:
        """Pass rate, mean score and errors per grader."""
        frame = self.results.assign(errored=self.results.error.notna())
        return (frame.groupby("grader_name", sort=True)
                .agg(pass_rate=("passed", "mean"), mean_score=("unit_score", "mean"), errored=("errored", "sum"))
                .reset_index().rename(columns={"grader_name": "grader"}))

    def worst(self, n: int = 5) -> pd.DataFrame:
        """The ``n`` items with the lowest mean score (failures first), with the graders they failed."""
        failed = self.results[~self.results.passed].groupby("item_index").grader_name.agg(", ".join).rename("failed")
        frame = self.items.join(failed, on="item_index")
        return frame.sort_values(["passed", "score", "item_index"]).head(n)[["item_index", "input", "output_text", "score", "passed", "failed", "error"]]

    def as_dataset(self, *, passed: bool | None = None) -> Dataset:
        """The run's items with what the target answered (``output``), its ``score`` and ``passed``:
        for ``to_finetuning(run.as_dataset(passed=True), path, reply="output")`` or another run.
        ``passed``: only the items that passed (True) or failed (False)."""
        rows = self.items if passed is None else self.items[self.items.passed == passed]
        if rows.empty:
            raise ChatLabError(f"No item of {self.id} {'passed' if passed else 'failed'} (of {len(self.items)}), so there is no dataset to make.")
        items = [{**json.loads(r.item), "output": r.output_text or "", "score": float(r.score), "passed": bool(r.passed)} for r in rows.itertuples()]
        return Dataset(items, f"{self.name} ({'passed' if passed else 'failed'})" if passed is not None else self.name, f"eval run {self.id}")

    def __repr__(self) -> str:
        counts = self.summary["result_counts"]
        return f"EvalRun({self.id!r}, {self.name!r}, {counts['passed']}/{counts['total']} passed, {counts['errored']} errored)"

    def _repr_html_(self) -> str:
        counts = self.summary["result_counts"]
        latency = self.items.latency_ms.dropna()
        cost = self.items.cost_usd.dropna()
        figures = [
            ("items", str(counts["total"])), ("passed", f"{counts['passed']} ({self.pass_rate:.0%})"), ("failed", str(counts["failed"])),
            ("errored", str(counts["errored"])), ("mean score", f"{self.mean_score:.3f}"),
            ("latency p50 / p95", f"{latency.quantile(0.5):.0f} / {latency.quantile(0.95):.0f} ms" if len(latency) else "–"),
            ("tokens in / out", f"{int(self.items.input_tokens.fillna(0).sum())} / {int(self.items.output_tokens.fillna(0).sum())}"),
            ("cost", f"${cost.sum():.4f} (${cost.mean():.5f} per item)" if len(cost) else "– (no price for this model)"),
        ]
        head = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in figures)
        graders = "".join(
            f"<tr><td>{html.escape(str(r.grader))}</td><td>{_bar(r.pass_rate)} {r.pass_rate:.0%}</td><td>{r.mean_score:.3f}</td><td>{int(r.errored)}</td></tr>"
            for r in self.per_grader().itertuples())
        worst = "".join(
            f"<tr><td>{r.item_index}</td><td>{_cell(r.input)}</td><td>{_cell(r.output_text)}</td><td>{r.score:.2f}</td>"
            f"<td>{_cell(r.failed)}</td><td>{_cell(r.error)}</td></tr>" for r in self.worst().itertuples())
        return (f"<div><b>{html.escape(self.name)}</b> <code>{html.escape(self.id)}</code> · {html.escape(str(self.summary['status']))}"
                f"<table>{head}</table><b>Graders</b><table><tr><th>grader</th><th>pass rate</th><th>mean score</th><th>errored</th></tr>{graders}</table>"
                f"<b>Worst items</b><table><tr><th>#</th><th>input</th><th>answer</th><th>score</th><th>failed</th><th>error</th></tr>{worst}</table></div>")


def load_run(cur: Any, run_id: str, user_id: str | None) -> EvalRun:
    """The stored run ``run_id`` (only ``user_id``'s when given)."""
    owner = cur.execute("SELECT user_id, target, graders FROM eval_runs WHERE run_id = ?", [run_id]).fetchone()
    if owner is None or (user_id is not None and owner[0] != user_id):
        raise ChatLabError(f"There is no eval run {run_id!r}" + (f" of {user_id!r}." if user_id else "."))
    items = cur.execute(ITEMS_SQL, [run_id]).df()
    results = cur.execute(RESULTS_SQL, [run_id]).df()
    ranges = {g["name"]: g["range"] for g in json.loads(owner[2]) if g.get("type") == "score_model"}
    results["unit_score"] = [(s - ranges[n][0]) / (ranges[n][1] - ranges[n][0]) if n in ranges else s
                             for n, s in zip(results.grader_name, results.score, strict=True)]
    if len(results):
        scores = results.pivot(index="item_index", columns="grader_name", values="score")
        per_item = results.groupby("item_index").agg(score=("unit_score", "mean"), passed=("passed", "all"))
        taken = {*items.columns, *per_item.columns}
        scores = scores.rename(columns=lambda c: f"{c}_grader" if c in taken else c)  # a grader named "score" keeps a column of its own
        items = items.join(per_item, on="item_index").join(scores, on="item_index")
    else:
        items = items.assign(score=float("nan"), passed=False)
    items["passed"] = items.passed.fillna(False).astype(bool)
    return EvalRun(run_id, summary(cur, run_id), json.loads(owner[1]), items, results)


def _bar(share: float) -> str:
    width = round(share * 60)
    return (f"<span style='display:inline-block;width:{width}px;height:0.7em;background:#3a7'></span>"
            f"<span style='display:inline-block;width:{60 - width}px;height:0.7em;background:#ddd'></span>")


def _cell(value: Any, limit: int = 120) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    text = str(value)
    return html.escape(text if len(text) <= limit else text[: limit - 1] + "…")
