"""Two eval runs compared item by item: regressions, fixes and score deltas.

Items are matched by their content hash (the same item in both datasets; repeats pair in order),
so an A/B over two prompts or workflow versions is two runs on one dataset and one comparison.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ChatLabError
from ..logs import chart
from .report import EvalRun

if TYPE_CHECKING:
    import pandas as pd

CHANGES = ("regression", "fix", "still passing", "still failing")


@dataclass
class RunComparison:
    """``df``: one row per item in both runs (``score_a``, ``score_b``, ``delta``, ``passed_a``,
    ``passed_b``, ``change``); ``regressions`` and ``fixes``; ``per_grader`` pass rates side by side."""

    a: EvalRun
    b: EvalRun
    df: pd.DataFrame
    per_grader: pd.DataFrame

    @classmethod
    def of(cls, a: EvalRun, b: EvalRun) -> RunComparison:
        left, right = _keyed(a.items), _keyed(b.items)
        both = left.merge(right, on=["item_hash", "occurrence"], suffixes=("_a", "_b"))
        if both.empty:
            raise ChatLabError(f"Runs {a.id} and {b.id} have no item in common: compare runs of the same dataset.")
        both = both.assign(input=both.input_a, delta=both.score_b - both.score_a,
                           change=[_change(x, y) for x, y in zip(both.passed_a, both.passed_b, strict=True)])
        frame = both[["item_index_a", "item_index_b", "input", "score_a", "score_b", "delta", "passed_a", "passed_b", "change",
                      "output_text_a", "output_text_b", "thread_id_a", "thread_id_b"]].sort_values("item_index_a").reset_index(drop=True)
        graders = a.per_grader().merge(b.per_grader(), on="grader", how="outer", suffixes=("_a", "_b"))
        graders = graders.assign(delta=graders.pass_rate_b - graders.pass_rate_a)[["grader", "pass_rate_a", "pass_rate_b", "delta", "mean_score_a", "mean_score_b"]]
        return cls(a, b, frame, graders)

    @property
    def regressions(self) -> pd.DataFrame:
        """Items that passed in ``a`` and fail in ``b``."""
        return self.df[self.df.change == "regression"]

    @property
    def fixes(self) -> pd.DataFrame:
        """Items that failed in ``a`` and pass in ``b``."""
        return self.df[self.df.change == "fix"]

    def counts(self) -> dict[str, int]:
        return {change: int((self.df.change == change).sum()) for change in CHANGES}

    def plot(self) -> Any:
        """Each item's score in ``a`` against ``b`` (above the diagonal: better in ``b``), and pass
        rate per grader side by side. Returns a matplotlib Figure."""
        figure = chart()(figsize=(10, 4))
        scatter, bars = figure.subplots(1, 2)
        colours = {"regression": "#c33", "fix": "#3a7", "still passing": "#89a", "still failing": "#caa"}
        for change, group in self.df.groupby("change"):
            scatter.scatter(group.score_a, group.score_b, label=f"{change} ({len(group)})", color=colours[str(change)], alpha=0.8)
        scatter.plot([0, 1], [0, 1], color="#999", linewidth=0.8)
        scatter.set(xlabel=f"score in {self.a.name}", ylabel=f"score in {self.b.name}", title="mean score per item")
        scatter.legend(fontsize="small")
        positions = range(len(self.per_grader))
        bars.barh([p + 0.2 for p in positions], self.per_grader.pass_rate_a.fillna(0), height=0.4, label="a", color="#89a")
        bars.barh([p - 0.2 for p in positions], self.per_grader.pass_rate_b.fillna(0), height=0.4, label="b", color="#3a7")
        bars.set_yticks(list(positions), list(self.per_grader.grader))
        bars.set(xlim=(0, 1), xlabel="pass rate", title="per grader")
        bars.legend(fontsize="small")
        figure.tight_layout()
        return figure

    def __repr__(self) -> str:
        counts = self.counts()
        return (f"RunComparison({self.a.id} → {self.b.id}: pass rate {self.a.pass_rate:.0%} → {self.b.pass_rate:.0%}, "
                f"{counts['fix']} fixed, {counts['regression']} regressed)")

    def _repr_html_(self) -> str:
        counts = self.counts()
        rows = "".join(
            f"<tr><td>{html.escape(str(r.grader))}</td><td>{_pct(r.pass_rate_a)}</td><td>{_pct(r.pass_rate_b)}</td><td>{_signed(r.delta)}</td></tr>"
            for r in self.per_grader.itertuples())
        changed = self.df[self.df.change.isin(["regression", "fix"])]
        items = "".join(
            f"<tr><td>{html.escape(str(r.change))}</td><td>{r.item_index_a}</td><td>{html.escape(str(r.input))[:120]}</td>"
            f"<td>{r.score_a:.2f} → {r.score_b:.2f}</td></tr>" for r in changed.itertuples())
        return (f"<div><b>{html.escape(self.a.name)}</b> → <b>{html.escape(self.b.name)}</b>: pass rate {self.a.pass_rate:.0%} → "
                f"{self.b.pass_rate:.0%}, mean score {self.a.mean_score:.3f} → {self.b.mean_score:.3f}; "
                f"{counts['fix']} fixed, {counts['regression']} regressed, {counts['still passing']} still passing, {counts['still failing']} still failing"
                f"<table><tr><th>grader</th><th>a</th><th>b</th><th>Δ</th></tr>{rows}</table>"
                + (f"<table><tr><th>change</th><th>#</th><th>input</th><th>score</th></tr>{items}</table>" if items else "") + "</div>")


def _keyed(items: pd.DataFrame) -> pd.DataFrame:
    return items.assign(occurrence=items.groupby("item_hash").cumcount())


def _change(a: bool, b: bool) -> str:
    return {(True, False): "regression", (False, True): "fix", (True, True): "still passing"}.get((bool(a), bool(b)), "still failing")


def _pct(value: float) -> str:
    return "–" if value != value else f"{value:.0%}"


def _signed(value: float) -> str:
    return "–" if value != value else f"{value:+.0%}"
