"""Traces and spans land in the lab's DuckDB file, linked to the thread, and nowhere else."""

import time

from agents import Agent, GuardrailFunctionOutput, handoff, input_guardrail
from agents.tracing import get_trace_provider

from chatkit_lab import MirrorModel
from chatkit_lab.tracing import _Router

from .test_server import get_weather


@input_guardrail(run_in_parallel=False)
async def not_empty(ctx, agent, items):
    return GuardrailFunctionOutput(output_info={}, tripwire_triggered=False)


def wait_for_rows(lab, sql, n, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        rows = lab.sql(sql)
        if len(rows) >= n or time.monotonic() > deadline:
            return rows
        time.sleep(0.02)


def test_agent_generation_function_guardrail_and_handoff_spans_are_recorded(make_lab):
    billing = Agent(name="Billing", model=MirrorModel())
    triage = Agent(name="Triage", tools=[get_weather], handoffs=[handoff(billing)], input_guardrails=[not_empty], model=MirrorModel())
    lab = make_lab(agent=triage)
    turn = lab.send_sync("call get_weather Oslo")
    lab.send_sync("call transfer_to_billing", turn.thread_id)
    traces = wait_for_rows(lab, "SELECT * FROM traces WHERE ended_at IS NOT NULL", 2)
    assert traces.thread_id.tolist() == [turn.thread_id] * 2
    assert set(traces.trace_id) == set(lab.sql("SELECT trace_id FROM turns").trace_id)
    spans = lab.sql("SELECT span_type, name, thread_id, duration_ms, input_tokens, output_tokens FROM spans")
    kinds = set(zip(spans.span_type, spans.name))
    assert {("agent", "Triage"), ("agent", "Billing"), ("function", "get_weather"), ("guardrail", "not_empty"),
            ("handoff", "Triage -> Billing"), ("generation", "mirror")} <= kinds
    assert (spans.thread_id == turn.thread_id).all()
    assert (spans.duration_ms >= 0).all()
    generations = spans[spans.span_type == "generation"]
    assert (generations.input_tokens > 0).all() and (generations.output_tokens > 0).all()


def test_nothing_is_exported_to_openai_by_default(make_lab):
    make_lab()
    processors = get_trace_provider()._multi_processor._processors
    assert len(processors) == 1 and isinstance(processors[0], _Router)


def test_two_labs_in_one_kernel_keep_their_own_traces(make_lab, tmp_path):
    a = make_lab(db=tmp_path / "a.duckdb")
    b = make_lab(db=tmp_path / "b.duckdb")
    ta, tb = a.send_sync("to a"), b.send_sync("to b")
    assert wait_for_rows(a, "SELECT thread_id FROM traces WHERE ended_at IS NOT NULL", 1).thread_id.tolist() == [ta.thread_id]
    assert wait_for_rows(b, "SELECT thread_id FROM traces WHERE ended_at IS NOT NULL", 1).thread_id.tolist() == [tb.thread_id]
