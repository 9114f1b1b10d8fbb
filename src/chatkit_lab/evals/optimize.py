"""Prompt optimisation: a judge model reads a run's failures and proposes revised instructions.

A round is kept only when its run beats the run it started from (a higher pass rate, or the same
pass rate and a higher mean score); ``lab.optimize_sync`` runs the rounds and stores each in
``eval_rounds``.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

from ..errors import ChatLabError
from .graders import Judge
from .report import EvalRun

OPTIMIZER = (
    "You improve the instructions (system prompt) of an AI assistant. You get its current instructions and "
    "examples of inputs where its answers failed the graders, with the graders that failed. Write revised "
    "instructions that keep what works and fix the failures; do not mention the examples. Reply with the "
    "complete revised instructions only."
)
SCHEMA = {"type": "object", "additionalProperties": False, "required": ["instructions"], "properties": {"instructions": {"type": "string"}}}


@dataclass
class Optimization:
    """The rounds of one ``lab.optimize_sync`` call: ``rounds`` (a DataFrame of ``eval_rounds``),
    ``best`` (the best run, the starting run when no round improved) and its ``instructions``."""

    id: str
    rounds: Any
    best: EvalRun
    instructions: str

    def __repr__(self) -> str:
        kept = int(self.rounds.kept.sum()) if len(self.rounds) else 0
        return f"Optimization({self.id!r}, {len(self.rounds)} rounds, {kept} kept, best {self.best.id} at {self.best.pass_rate:.0%})"

    def _repr_html_(self) -> str:
        table = self.rounds[["round", "run_id", "pass_rate_before", "pass_rate_after", "score_before", "score_after", "kept"]].to_html(index=False)
        return f"<div>{self!r:s}<br>{table}<b>Instructions</b><pre style='white-space:pre-wrap'>{html.escape(self.instructions)}</pre></div>"


def failures(run: EvalRun, limit: int = 10) -> list[dict[str, Any]]:
    """Up to ``limit`` failed items (lowest scores first): input, answer and the graders it failed."""
    worst = run.worst(limit)
    return [{"input": r.input, "answer": r.output_text or "", "failed": r.failed if isinstance(r.failed, str) else r.error or "errored"}
            for r in worst[~worst.passed].itertuples()]


def prompt(instructions: str, failed: list[dict[str, Any]]) -> list[dict[str, str]]:
    examples = "\n\n".join(f"Input: {f['input']}\nAnswer: {f['answer']}\nFailed: {f['failed']}" for f in failed)
    return [{"role": "system", "content": OPTIMIZER},
            {"role": "user", "content": f"Current instructions:\n{instructions}\n\nFailures:\n{examples}"}]


async def propose(judge: Judge, instructions: str, failed: list[dict[str, Any]]) -> str:
    """The judge's revised instructions for these failures."""
    try:
        answer = await judge(prompt(instructions, failed), SCHEMA, None)
    except Exception as exc:  # a provider failure is a sentence, and nothing is stored
        said = str(exc).removeprefix("The judge model failed: ")  # model_judge's own sentence
        raise ChatLabError(f"The judge model could not propose instructions: {said}") from exc
    revised = answer.get("instructions") if isinstance(answer, dict) else None
    if not isinstance(revised, str) or not revised.strip():
        raise ChatLabError("The judge model proposed no instructions (an empty answer); nothing was run.")
    return revised.strip()


def improves(before: EvalRun, after: EvalRun) -> bool:
    """Whether ``after`` beats ``before``: a higher pass rate, or the same and a higher mean score."""
    return (after.pass_rate, after.mean_score) > (before.pass_rate, before.mean_score)
