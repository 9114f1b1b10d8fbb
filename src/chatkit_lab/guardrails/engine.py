"""Runs a guardrails pipeline on text: the engine behind ``check()`` and the chat loop."""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import functools
import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import detector, library, pii, text
from .config import Pipeline, load_config
from .judge import ANSWER, PROMPTS, Judge

log = logging.getLogger("chatkit_lab")
DETERMINISTIC = ("Contains PII", "Keyword Filter", "Competitors", "URL Filter", "Secret Keys")
# Checks whose info holds what the text said: stored as counts only.
_SENSITIVE_INFO = {"detected_entities": "detected_counts", "detected_secrets": "secret_count"}
BLOCK_MESSAGE = "I can't help with that message: it was stopped by a guardrail ({checks})."
OUTPUT_MESSAGE = "This reply was withheld by a guardrail ({checks})."


@dataclass
class CheckResult:
    """One check's verdict. ``info`` holds what matched, the confidence and so on, with
    openai-guardrails' keys; ``execution_failed`` means the check could not run."""

    name: str
    stage: str
    tripwire_triggered: bool
    info: dict[str, Any] = field(default_factory=dict)
    execution_failed: bool = False
    duration_ms: float = 0.0

    @property
    def confidence(self) -> float | None:
        value = self.info.get("confidence")
        return float(value) if isinstance(value, int | float) else None

    def stored_info(self) -> dict[str, Any]:
        """``info`` without what the text said (matched PII values, secrets): safe to write."""
        out = {}
        for key, value in self.info.items():
            if key in _SENSITIVE_INFO:
                out[_SENSITIVE_INFO[key]] = {k: len(v) for k, v in value.items()} if isinstance(value, dict) else len(value)
            elif key != "checked_text":
                out[key] = value
        return out


@dataclass
class Report:
    """A stage's verdicts: ``checked_text`` is the text after masking (the text itself when
    nothing was masked); ``results`` come in config order."""

    stage: str
    checked_text: str
    results: list[CheckResult]

    @property
    def tripwire_triggered(self) -> bool:
        return any(r.tripwire_triggered for r in self.results)

    @property
    def tripped(self) -> list[CheckResult]:
        return [r for r in self.results if r.tripwire_triggered]

    def to_frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame([{"stage": r.stage, "check_name": r.name, "triggered": r.tripwire_triggered, "confidence": r.confidence,
                              "execution_failed": r.execution_failed, "duration_ms": round(r.duration_ms, 3), "info": r.stored_info()}
                             for r in self.results])

    def __repr__(self) -> str:
        verdicts = ", ".join(f"{r.name}: {'tripped' if r.tripwire_triggered else 'failed' if r.execution_failed else 'passed'}" for r in self.results)
        return f"<Report {self.stage}: {verdicts}>"


class Guardrails:
    """A guardrails config ready to run, with how a chat acts on it.

    ``judge`` answers the model checks (default: the lab's model when it is a real provider);
    without one, Jailbreak and Prompt Injection Detection use the offline detector and the other
    model checks fail. ``moderation``: an ``AsyncOpenAI`` client for Moderation (default: the
    lab's, when its provider is OpenAI). ``fail_closed``: a check that fails counts as tripped (default: as in
    openai-guardrails, it does not, so an unreachable judge does not stop every turn; every
    failure is still a verdict row). ``block_message`` and ``output_message`` are what the chat
    shows for a stopped message or reply (``{checks}`` names the checks); ``output_action``
    "replace" swaps a tripped reply for ``output_message``, "flag" keeps it and says so.
    """

    def __init__(
        self,
        config: Any,
        *,
        judge: Judge | None = None,
        moderation: Any = None,
        fail_closed: bool = False,
        block_message: str = BLOCK_MESSAGE,
        output_message: str = OUTPUT_MESSAGE,
        output_action: str = "replace",
    ) -> None:
        from ..errors import ChatLabError

        if output_action not in ("replace", "flag"):
            raise ChatLabError(f"output_action is 'replace' or 'flag', not {output_action!r}.")
        if judge is not None and not callable(judge):  # a model name: every judged check failed, and failed open
            raise ChatLabError(f"judge= is a judge such as ModelJudge('gpt-4.1-mini') or ModelJudge(model), not {judge!r}.")
        if not isinstance(fail_closed, bool):
            raise ChatLabError(f"fail_closed= is True or False, not {fail_closed!r}.")
        for what, message in (("block_message", block_message), ("output_message", output_message)):
            if not isinstance(message, str) or not message.strip():  # the chat would show an empty message
                raise ChatLabError(f"{what}= is the sentence the chat shows instead, not {message!r}.")
        self.pipeline: Pipeline = load_config(config)
        self.judge, self.moderation, self.fail_closed = judge, moderation, fail_closed
        self.block_message, self.output_message, self.output_action = block_message, output_message, output_action

    def using(self, *, judge: Judge | None = None, moderation: Any = None) -> Guardrails:
        """A copy that uses ``judge`` and ``moderation`` where this one names none (a lab fills in its provider)."""
        filled = copy.copy(self)
        filled.judge, filled.moderation = self.judge or judge, self.moderation or moderation
        return filled

    def has(self, stage: str) -> bool:
        return self.pipeline.stage(stage) is not None

    def reads_history(self, stages: Sequence[str] = ("pre_flight", "input")) -> bool:
        """Whether a check of ``stages`` reads the conversation (the model checks do)."""
        return any(c.name not in DETERMINISTIC for name in stages if (stage := self.pipeline.stage(name)) for c in stage.checks)

    def masked_entities(self, stages: Sequence[str] = ("pre_flight", "input", "output")) -> list[str]:
        """The PII entities the Contains PII checks of ``stages`` look for, which the chat masks
        in what it stores and writes: a blocking check's finds too, as a stopped message is still
        stored (masked), and a withheld reply still reached the trace."""
        found: dict[str, None] = {}
        for name in stages:
            stage = self.pipeline.stage(name)
            for check in stage.checks if stage else ():
                if check.name == "Contains PII":
                    found.update(dict.fromkeys(check.config.entities))
        return list(found)

    def redactor(self) -> Callable[[str], str] | None:
        """Masks those entities in any text (JSON keeps its structure), or None without a PII check."""
        entities = [e for e in self.masked_entities() if e in pii.SUPPORTED]
        if not entities:
            return None
        return lambda value: _mask_json_or_text(value, entities)

    async def run(
        self, stage: str, data: str, *, history: Sequence[dict[str, str]] = (), tool_outputs: Sequence[str] = (), judge: Judge | None = None,
        moderation: Any = None,
    ) -> Report:
        """Run ``stage``'s checks on ``data``. The deterministic checks all read ``data`` (as in
        openai-guardrails, so a URL Filter still sees the URLs a PII check masks); the model checks
        run concurrently after them, on the masked text, so no judge is sent what was masked."""
        spec = self.pipeline.stage(stage)
        if spec is None:
            return Report(stage, data, [])
        judge, moderation = judge or self.judge, moderation or self.moderation
        checked = data
        results: dict[int, CheckResult] = {}
        pending = []
        for i, check in enumerate(spec.checks):
            if check.name in DETERMINISTIC:
                given = checked if check.name == "Contains PII" else data
                if check.library is not None:
                    results[i] = await _from_library(stage, check, given, moderation)
                    masked = results[i].info.get("checked_text", given)
                else:
                    results[i], masked = _timed(stage, check.name, check.config, given)
                checked = masked if check.name == "Contains PII" and isinstance(masked, str) else checked
            else:
                pending.append(i)
        if pending:
            done = await asyncio.gather(*(_from_library(stage, spec.checks[i], checked, moderation) if spec.checks[i].library is not None else
                                          self._model_check(stage, spec.checks[i].name, spec.checks[i].config, checked, history, tool_outputs, judge, moderation)
                                          for i in pending))
            results.update(zip(pending, done, strict=True))
        ordered = [results[i] for i in range(len(spec.checks))]
        if self.fail_closed:
            for r in ordered:
                r.tripwire_triggered = r.tripwire_triggered or r.execution_failed
        if spec.suppress_tripwire:
            for r in ordered:
                r.info["tripwire_suppressed"], r.tripwire_triggered = r.tripwire_triggered, False
        for r in ordered:
            r.info.setdefault("guardrail_name", r.name)
            r.info.setdefault("stage_name", stage)
        return Report(stage, checked, ordered)

    async def _model_check(
        self, stage: str, name: str, config: Any, data: str, history: Sequence[dict[str, str]], tool_outputs: Sequence[str], judge: Judge | None,
        moderation: Any,
    ) -> CheckResult:
        t0 = time.perf_counter()
        try:
            if name == "Moderation":
                info = await _moderated(config, data, moderation)
                return CheckResult(name, stage, bool(info["flagged_categories"]), info, duration_ms=(time.perf_counter() - t0) * 1000)
            info = await _judged(name, config, data, history, tool_outputs, judge)
        except Exception as exc:
            reason = str(exc).strip() or type(exc).__name__
            log.warning("guardrail %s (%s) could not run: %s", name, stage, reason)
            return CheckResult(name, stage, False, {"error": reason}, execution_failed=True, duration_ms=(time.perf_counter() - t0) * 1000)
        tripped = bool(info.get("flagged")) and float(info.get("confidence", 0)) >= config.confidence_threshold
        return CheckResult(name, stage, tripped, info, duration_ms=(time.perf_counter() - t0) * 1000)


async def _from_library(stage: str, check: Any, data: str, client: Any) -> CheckResult:
    """openai-guardrails' own run of ``check`` (the config named that implementation)."""
    t0 = time.perf_counter()
    tripped, failed, info = await library.run(check.library, data, client)
    if failed:
        log.warning("guardrail %s (%s, openai-guardrails) could not run: %s", check.name, stage, info.get("error"))
    info["implementation"] = library.NAME
    return CheckResult(check.name, stage, tripped, info, execution_failed=failed, duration_ms=(time.perf_counter() - t0) * 1000)


def run_sync(coro: Any) -> Any:
    """Await ``coro`` from code that is not async; inside a running loop (a notebook cell) in a
    thread of its own, as the kernel's loop cannot be blocked on."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


class NeedsModelError(Exception):
    """A check that cannot run without a judge or a provider."""


async def _judged(
    name: str, config: Any, data: str, history: Sequence[dict[str, str]], tool_outputs: Sequence[str], judge: Judge | None
) -> dict[str, Any]:
    recent = list(history)[-config.max_turns :] if hasattr(config, "max_turns") else []
    if name == "Prompt Injection Detection" and tool_outputs:
        data = "\n\n".join(tool_outputs)  # what the agent read after the user's message
    if judge is None:
        if name in ("Jailbreak", "Prompt Injection Detection"):
            kind = "jailbreak" if name == "Jailbreak" else "injection"
            scored = [detector.score(data, kind)]
            if name == "Jailbreak" and recent:  # attacks spread over turns: the user's recent turns together
                users = [m["content"] for m in recent if m.get("role") == "user"]
                scored.append(detector.score("\n".join([*users, data]), kind))
            confidence, signals = max(scored, key=lambda s: s[0])
            info = {"flagged": confidence >= 0.5, "confidence": round(confidence, 4), "threshold": config.confidence_threshold,
                    "judge": "offline detector", "signals": signals}
            if name == "Jailbreak" or config.include_reasoning:
                info["reason"] = f"signals: {', '.join(signals)}" if signals else "no attack signals"
            return info
        raise NeedsModelError(f"{name} needs a model to judge it: this lab runs offline. Pass judge= (any Agents SDK model, "
                              "or ModelJudge.endpoint(...)) or configure a provider.")
    instructions = PROMPTS[name]
    if getattr(config, "system_prompt_details", None):
        instructions += "\n\n" + config.system_prompt_details
    if name == "Hallucination Detection":
        instructions += "\n\nReference material:\n" + ("\n---\n".join(tool_outputs) or "(none: the turn used no tools)")
    payload = json.dumps({"conversation": recent, "latest_input": data}, ensure_ascii=False) if recent else data
    verdict = await judge(instructions + "\n\n" + ANSWER, payload)
    info = {"flagged": verdict.flagged, "confidence": verdict.confidence, "threshold": config.confidence_threshold, "judge": judge.name}
    if name == "Jailbreak" or config.include_reasoning:
        info["reason"] = verdict.reason
    return info


MODERATION_MODEL = "omni-moderation-latest"


async def _moderated(config: Any, data: str, client: Any) -> dict[str, Any]:
    """OpenAI's moderation endpoint on ``data``: which of the configured categories it flags."""
    if client is None:
        raise NeedsModelError("Moderation needs OpenAI's moderation endpoint, which this lab has no provider for; "
                              "configure OPENAI_API_KEY (or pass Guardrails(moderation=AsyncOpenAI(...))), or use the offline checks.")
    response = await client.moderations.create(model=MODERATION_MODEL, input=data)
    result = response.results[0]
    flags, scores = result.categories.model_dump(by_alias=True), result.category_scores.model_dump(by_alias=True)
    return {"flagged_categories": [c for c in config.categories if flags.get(c)], "categories_checked": list(config.categories),
            "category_details": {c: scores.get(c) for c in config.categories}}


def _timed(stage: str, name: str, config: Any, data: str) -> tuple[CheckResult, str]:
    t0 = time.perf_counter()
    tripped, info, checked = _deterministic(name, config, data)
    return CheckResult(name, stage, tripped, info, duration_ms=(time.perf_counter() - t0) * 1000), checked


def _deterministic(name: str, config: Any, data: str) -> tuple[bool, dict[str, Any], str]:
    """(tripped, info, the text after this check) for one deterministic check."""
    if name == "Contains PII":
        normal = pii.normalise(data)
        entities = [e for e in config.entities if e in pii.SUPPORTED]
        hits = pii.find(normal, entities, encoded=config.detect_encoded_pii)
        detected: dict[str, list[str]] = {}
        for hit in hits:
            detected.setdefault(hit.mask[1:-1], []).append(hit.value)
        checked = pii.masked(normal, hits) if hits else data
        info = {"detected_entities": detected, "entity_types_checked": list(config.entities), "checked_text": checked,
                "block_mode": config.block, "pii_detected": bool(hits), "detect_encoded_pii": config.detect_encoded_pii}
        unsupported = [e for e in config.entities if e not in pii.SUPPORTED]
        if unsupported and "entities" in config.model_fields_set:
            info["not_detected_offline"] = unsupported  # they need a language model (NER)
        return bool(hits) and config.block, info, checked  # blocked text is masked too: it may still be stored
    if name in ("Keyword Filter", "Competitors"):
        tripped, info = text.keywords(data, config)
    elif name == "URL Filter":
        tripped, info = text.url_filter(data, config)
    else:
        tripped, info = text.secret_keys(data, config)
    return tripped, info, data


_STRUCTURAL_KEYS = frozenset({"id", "thread_id", "created_at", "updated_at", "type", "status", "role", "preview_url", "url",
                              "mime_type", "upload_descriptor", "trace_id", "span_id", "parent_id", "call_id", "item_id"})


_ID = re.compile(r"[A-Za-z]+_[A-Za-z0-9]+")  # thr_…, msg_…, turn_…, trace_…: never PII, never rewritten


def _mask_json_or_text(value: str, entities: list[str]) -> str:
    # Every row the lab writes passes here (with a mask-mode PII check): JSON is masked value by
    # value, strings seen before (a thread's history, re-sent on every call) come from a cache,
    # and a value nothing was found in is returned as it came.
    if _ID.fullmatch(value) or not pii.may_hold(value):
        return value
    if value.lstrip()[:1] in ("{", "["):
        try:
            data = json.loads(value)
        except ValueError:
            pass
        else:
            masked = _mask_tree(data, tuple(entities))
            return value if masked == data else json.dumps(masked, ensure_ascii=False, separators=(",", ":"))
    return mask_text(value, entities)


def mask_text(value: str, entities: list[str] | tuple[str, ...]) -> str:
    if len(value) <= _CACHED_LENGTH:
        return _mask_cached(value, tuple(entities))
    return _mask(value, tuple(entities))


_CACHED_LENGTH = 8192


def _mask(value: str, entities: tuple[str, ...]) -> str:
    if not pii.may_hold(value):
        return value
    normal = pii.normalise(value)
    hits = pii.find(normal, entities)
    return pii.masked(normal, hits) if hits else value


_mask_cached = functools.lru_cache(maxsize=4096)(_mask)


def _mask_tree(node: Any, entities: tuple[str, ...], key: str | None = None) -> Any:
    if isinstance(node, str):
        return node if key in _STRUCTURAL_KEYS else mask_text(node, entities)
    if isinstance(node, list):
        return [_mask_tree(v, entities, key) for v in node]
    if isinstance(node, dict):
        return {k: _mask_tree(v, entities, k) for k, v in node.items()}
    return node
