"""Guardrails in a chat turn: the user's message is checked (and masked) before ChatKit stores
it, the reply is masked while it streams and checked when it is done, and every verdict becomes
a ``guardrail_results`` row and an Agents SDK guardrail span of the turn's trace."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

from agents import GuardrailFunctionOutput, InputGuardrail, OutputGuardrail
from chatkit.types import (
    AssistantMessageContent,
    AssistantMessageContentPartAdded,
    AssistantMessageContentPartDone,
    AssistantMessageContentPartTextDelta,
    AssistantMessageItem,
    NoticeEvent,
    ThreadItemAddedEvent,
    ThreadItemDoneEvent,
    ThreadItemUpdatedEvent,
    ThreadStreamEvent,
)

from ..store.items import item_text, utc_now
from ..store.rows import GuardrailRow, stored_json
from . import pii
from .engine import BLOCK_MESSAGE, OUTPUT_MESSAGE, CheckResult, Guardrails, Report, mask_text

__all__ = ["BLOCK_MESSAGE", "HOLDBACK", "OUTPUT_MESSAGE", "OutputGuard", "check_message", "failure_notice", "history_of", "masked_notice", "rows",
           "sdk_input_guardrails", "stopped", "summary", "tool_outputs"]
HOLDBACK = 64  # characters of a streaming reply held back until no PII pattern can still grow into them


def agent_guardrail(exc: Any, stage: str) -> CheckResult:
    """The agent's own Agents SDK guardrail that stopped its run (``exc`` is the SDK's
    ``InputGuardrailTripwireTriggered`` or ``OutputGuardrailTripwireTriggered``), as a verdict the
    chat and the turn row name."""
    return CheckResult(exc.guardrail_result.guardrail.get_name(), stage, True)


def summary(results: list[CheckResult]) -> str:
    """``Jailbreak (confidence 0.98), Keyword Filter``: what tripped."""
    return ", ".join(f"{r.name} (confidence {r.confidence:.2f})" if r.confidence is not None else r.name for r in results)


async def check_message(guardrails: Guardrails, content: list[Any], history: list[dict[str, str]]) -> list[Report]:
    """Run pre_flight, then input, on a user message's text parts; mask the parts in place."""
    reports = []
    for stage in ("pre_flight", "input"):
        if not guardrails.has(stage):
            continue
        text = "\n".join(part.text for part in content if getattr(part, "type", None) == "input_text")
        report = await guardrails.run(stage, text, history=history)
        reports.append(report)
        entities = [e for e in guardrails.masked_entities((stage,)) if e in pii.SUPPORTED]
        if entities and any(r.info.get("pii_detected") for r in report.results):
            for part in content:
                if getattr(part, "type", None) == "input_text":
                    part.text = mask_text(part.text, entities)
    return reports


def history_of(items: list[Any]) -> list[dict[str, str]]:
    """Stored items (oldest first) as the ``[{"role", "content"}]`` conversation checks read."""
    roles = {"user_message": "user", "assistant_message": "assistant"}
    return [{"role": roles[i.type], "content": item_text(i) or ""} for i in items if i.type in roles]


def tool_outputs(result: Any) -> list[str]:
    """What a run's tools returned so far, and the text of its file-search hits (Prompt Injection
    and Hallucination Detection read them)."""
    out = []
    for item in getattr(result, "new_items", None) or []:
        if item.type == "tool_call_output_item":
            out.append(str(item.output))
        elif item.type == "tool_call_item" and getattr(item.raw_item, "type", None) == "file_search_call":
            out += [hit.text for hit in getattr(item.raw_item, "results", None) or [] if getattr(hit, "text", None)]
    return out


def masked_notice(reports: list[Report]) -> NoticeEvent | None:
    counts: dict[str, int] = {}
    for report in reports:
        for r in report.results:
            for entity, values in (r.info.get("detected_entities") or {}).items():
                if not r.info.get("block_mode"):
                    counts[entity] = counts.get(entity, 0) + len(values)
    if not counts:
        return None
    what = ", ".join(f"{n} × {entity}" for entity, n in counts.items())
    return NoticeEvent(level="info", title="Masked by a guardrail", message=f"Masked before the model saw it: {what}.")


def failure_notice(reports: list[Report], fail_closed: bool) -> NoticeEvent | None:
    """Says which checks could not run, and what that meant for the message."""
    failed = [r for report in reports for r in report.results if r.execution_failed]
    if not failed:
        return None
    what = "; ".join(f"{r.name}: {r.info.get('error', 'failed')}" for r in failed)
    outcome = "counted as tripped (fail-closed)" if fail_closed else "let through (fail-open)"
    return NoticeEvent(level="warning", title="A guardrail could not run", message=f"{what} — {outcome}.")


def sdk_input_guardrails(reports: list[Report]) -> list[InputGuardrail[Any]]:
    """The input verdicts, already known, as sequential SDK guardrails: the run records each as a
    span, and a tripped one stops the run before the model is called."""

    def verdict(result: CheckResult) -> Any:
        async def fn(ctx: Any, agent: Any, given: Any) -> GuardrailFunctionOutput:
            return GuardrailFunctionOutput(output_info=result.stored_info(), tripwire_triggered=result.tripwire_triggered)
        return fn

    return [InputGuardrail(guardrail_function=verdict(r), name=r.name, run_in_parallel=False) for rep in reports for r in rep.results]


def rows(reports: list[Report], turn_id: str, thread_id: str, user_id: str) -> list[GuardrailRow]:
    out, index = [], dict.fromkeys(("pre_flight", "input", "output"), 0)
    now = utc_now()
    for report in reports:
        for r in report.results:
            out.append(GuardrailRow(
                turn_id=turn_id, thread_id=thread_id, user_id=user_id, stage=report.stage, check_index=index[report.stage],
                check_name=r.name, triggered=r.tripwire_triggered, execution_failed=r.execution_failed, confidence=r.confidence,
                info=stored_json(r.stored_info()), duration_ms=round(r.duration_ms, 3), created_at=now,
            ))
            index[report.stage] += 1
    return out


class OutputGuard:
    """The output stage of one turn, over its event stream: masks the reply's PII as it streams
    (holding back the last ``HOLDBACK`` characters), and checks each finished reply, which is
    replaced or flagged when a check trips, before ChatKit stores it."""

    def __init__(self, guardrails: Guardrails, history: list[dict[str, str]], tool_outputs: Callable[[], list[str]]) -> None:
        self.guardrails, self.history, self.tool_outputs = guardrails, history, tool_outputs
        self.entities = [e for e in guardrails.masked_entities(("output",)) if e in pii.SUPPORTED]
        self.reports: list[Report] = []
        self.tripped: list[CheckResult] = []
        self._verdicts: dict[str, asyncio.Future[Report]] = {}
        self._raw: dict[tuple[str, int], str] = {}  # the reply so far, normalised, per content part
        self._settled: dict[tuple[str, int], int] = {}  # how much of it has been released

    async def verdict(self, text: str) -> Report:
        """The output report of ``text``, computed once (the stream and the SDK guardrail share it)."""
        if text not in self._verdicts:
            future = self._verdicts[text] = asyncio.get_running_loop().create_future()
            try:
                report = await self.guardrails.run("output", text, history=self.history, tool_outputs=self.tool_outputs())
            except BaseException:
                # A turn being stopped, mostly: whoever waits on the same reply stops too (a
                # cancelled future, not an exception nobody retrieves).
                del self._verdicts[text]
                future.cancel()
                raise
            future.set_result(report)
            self.reports.append(report)
            self.tripped += report.tripped
        return await self._verdicts[text]

    def sdk_guardrails(self) -> list[OutputGuardrail[Any]]:
        """One SDK output guardrail per check (a span each) on the run's final output. Only
        "replace" trips the run (ChatKit then removes the reply); "flag" lets it stand."""
        stage = self.guardrails.pipeline.stage("output")
        replace = self.guardrails.output_action == "replace"

        def verdict(index: int) -> Any:
            async def fn(ctx: Any, agent: Any, output: Any) -> GuardrailFunctionOutput:
                result = (await self.verdict(output if isinstance(output, str) else str(output))).results[index]
                return GuardrailFunctionOutput(output_info=result.stored_info(), tripwire_triggered=result.tripwire_triggered and replace)
            return fn

        return [OutputGuardrail(guardrail_function=verdict(i), name=c.name) for i, c in enumerate(stage.checks if stage else ())]

    def _mask(self, text: str) -> str:
        return mask_text(text, self.entities) if self.entities else text

    def _streamed(self, key: tuple[str, int], piece: str) -> str:
        """The part of a streaming reply that can be shown now, masked. Text is held back until
        ``HOLDBACK`` characters follow it (no PII pattern is longer) and released in chunks of at
        least that size; each release scans only the text not yet released."""
        if not self.entities:
            return piece
        normal = self._raw[key] = self._raw.get(key, "") + pii.normalise(piece)
        settled = self._settled.get(key, 0)
        if len(normal) - settled < 2 * HOLDBACK:
            return ""
        start = max(0, settled - 8)  # a little context for the patterns' lookbehinds
        hits = [h for h in pii.find(normal[start:], self.entities) if h.start + start >= settled]
        cut = len(normal) - HOLDBACK
        for hit in hits:
            if hit.start + start < cut < hit.end + start:
                cut = hit.start + start
        if cut <= settled:
            return ""
        self._settled[key] = cut
        inside = [pii.Hit(h.start + start - settled, h.end + start - settled, h.entity, h.value) for h in hits if h.end + start <= cut]
        return pii.masked(normal[settled:cut], inside)

    def unreleased(self, more: str) -> str:
        """The streaming part's text still held back, then ``more`` of it, masked: what a stopped
        turn that nobody watched keeps (a chat keeps what its user saw)."""
        if not self.entities or not self._raw:
            return more
        key = next(reversed(self._raw))  # the part streamed last
        return self._mask(self._raw[key][self._settled.get(key, 0):] + pii.normalise(more))

    async def filter(self, events: AsyncIterator[ThreadStreamEvent]) -> AsyncIterator[ThreadStreamEvent]:
        async for event in events:
            if isinstance(event, ThreadItemUpdatedEvent) and isinstance(event.update, AssistantMessageContentPartTextDelta):
                event.update.delta = self._streamed((event.item_id, event.update.content_index), event.update.delta)
                if not event.update.delta:
                    continue
            elif isinstance(event, ThreadItemUpdatedEvent) and isinstance(event.update, AssistantMessageContentPartDone | AssistantMessageContentPartAdded):
                event.update.content.text = self._mask(event.update.content.text)
            elif isinstance(event, ThreadItemAddedEvent) and isinstance(event.item, AssistantMessageItem):
                for part in event.item.content:
                    part.text = self._mask(part.text)
            elif isinstance(event, ThreadItemDoneEvent) and isinstance(event.item, AssistantMessageItem):
                report = await self.verdict("".join(part.text for part in event.item.content))
                if (failed := failure_notice([report], self.guardrails.fail_closed)) is not None:
                    yield failed
                for part in event.item.content:
                    part.text = self._mask(part.text)
                if report.tripped:
                    names = summary(report.tripped)
                    if self.guardrails.output_action == "replace":
                        event.item.content = [AssistantMessageContent(text=self.guardrails.output_message.format(checks=names))]
                    yield event
                    action = "withheld" if self.guardrails.output_action == "replace" else "flagged"
                    yield NoticeEvent(level="warning", title="Guardrail", message=f"The reply was {action}: {names}.")
                    continue
            yield event


def stopped(template: str, notice: str | None, tripped: list[CheckResult], item_id: str, thread_id: str) -> list[ThreadStreamEvent]:
    """What the chat shows instead of an answer when a check stopped the turn: ``template`` with
    ``{checks}`` filled in, and a warning notice that starts with ``notice``."""
    names = summary(tripped)
    item = AssistantMessageItem(id=item_id, thread_id=thread_id, created_at=datetime.now(),
                                content=[AssistantMessageContent(text=template.format(checks=names))])
    events: list[ThreadStreamEvent] = [ThreadItemDoneEvent(item=item)]
    if notice:
        events.append(NoticeEvent(level="warning", title="Guardrail", message=f"{notice}: {names}."))
    return events
