"""Guardrails in openai-guardrails' JSON, run natively and offline: ``check`` a text, or give a
config to ``ChatLab(guardrails=...)`` and every turn is checked, masked and logged.

    >>> from chatkit_lab.guardrails import check
    >>> check("Mail me at ada@example.com", {"version": 1, "input": {"version": 1,
    ...       "guardrails": [{"name": "Contains PII", "config": {}}]}}).checked_text
    'Mail me at <EMAIL_ADDRESS>'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import ChatLabError
from .config import CHECKS, DEFAULT_CONFIG, PII_ENTITIES, STAGES, Pipeline, load_config
from .engine import CheckResult, Guardrails, Report, run_sync
from .evals import GuardrailEval, aevaluate_guardrails, dataset_path, evaluate_guardrails
from .judge import Judge, ModelJudge, Verdict
from .pii import SUPPORTED as PII_ENTITIES_DETECTED

__all__ = [
    "CHECKS", "DEFAULT_CONFIG", "PII_ENTITIES", "PII_ENTITIES_DETECTED", "STAGES", "CheckResult", "GuardrailEval", "Guardrails", "Judge", "ModelJudge",
    "Pipeline", "Report", "Verdict", "acheck", "aevaluate_guardrails", "check", "dataset_path", "evaluate_guardrails", "load_config",
]


def _guardrails(config: Any, judge: Judge | None) -> Guardrails:
    return config if isinstance(config, Guardrails) else Guardrails(config, judge=judge)


async def acheck(
    text: str, config: Any, stage: str = "input", *, judge: Judge | None = None,
    history: Sequence[dict[str, str]] = (), tool_outputs: Sequence[str] = (),
) -> Report:
    """Run ``stage`` of ``config`` (either JSON form, a dict, a path or a ``Guardrails``) on
    ``text``. ``history``: recent turns ``[{"role", "content"}]`` for conversation-aware checks;
    ``tool_outputs``: what the turn's tools returned (Prompt Injection and Hallucination Detection)."""
    if not isinstance(text, str):
        raise ChatLabError(f"check() takes the text to check as a string, not {type(text).__name__}.")
    if isinstance(history, str) or not all(isinstance(turn, dict) for turn in history):
        raise ChatLabError('history= is a list of turns such as [{"role": "user", "content": "..."}].')
    tool_outputs = [tool_outputs] if isinstance(tool_outputs, str) else tool_outputs  # one output, not its characters
    if stage not in STAGES:
        raise ChatLabError(f"There is no guardrails stage {stage!r}; the stages are {', '.join(STAGES)}.")
    guardrails = _guardrails(config, judge)
    if not guardrails.has(stage):  # nothing would be checked, and the report would say "not tripped"
        has = [name for name in STAGES if guardrails.has(name)]
        raise ChatLabError(f"This config has no {stage!r} stage (it has {', '.join(has)}), so nothing would be checked; "
                           f"a bundle ({{\"guardrails\": [...]}}) is the input stage.")
    return await guardrails.run(stage, text, history=history, tool_outputs=tool_outputs)


def check(
    text: str, config: Any, stage: str = "input", *, judge: Judge | None = None,
    history: Sequence[dict[str, str]] = (), tool_outputs: Sequence[str] = (),
) -> Report:
    """``acheck``, for code that is not async (a notebook cell: it runs beside the kernel's loop)."""
    report: Report = run_sync(acheck(text, config, stage, judge=judge, history=history, tool_outputs=tool_outputs))
    return report
