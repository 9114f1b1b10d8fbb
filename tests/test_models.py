"""The offline mirror model, backend selection, and a real OpenAI-compatible endpoint."""

from typing import Literal

import pytest
from agents import Agent, Runner, function_tool
from pydantic import BaseModel

from chatkit_lab import MirrorModel
from chatkit_lab.models import resolve_backend

from .conftest import run
from .helpers.fake_openai import FakeOpenAI


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"It is 21C and sunny in {city}."


@function_tool
def lookup(customer: str, limit: int = 3) -> str:
    """Look a customer up."""
    return f"{customer}:{limit}"


class Route(BaseModel):
    category: Literal["billing", "technical", "other"]
    reason: str


def test_structured_output_is_deterministic_and_follows_the_text():
    classifier = Agent(name="Classifier", instructions="Classify", output_type=Route, model=MirrorModel())
    result = run(Runner.run(classifier, "My invoice shows a technical fee"))
    assert result.final_output == Route(category="technical", reason="mirror: My invoice shows a technical fee")
    assert run(Runner.run(classifier, "hello")).final_output.category == "billing"


def test_call_syntax_takes_json_or_free_text():
    agent = Agent(name="A", tools=[lookup, get_weather], model=MirrorModel())
    assert run(Runner.run(agent, 'call lookup {"customer": "acme", "limit": 9}')).final_output == "Tool `lookup` returned: acme:9"
    assert run(Runner.run(agent, "/get_weather Bergen")).final_output == "Tool `get_weather` returned: It is 21C and sunny in Bergen."
    # An unknown tool name is just text.
    assert "you said: \"call nothing\"" in run(Runner.run(agent, "call nothing")).final_output


def test_words_command_gives_a_long_reply():
    out = run(Runner.run(Agent(name="A", model=MirrorModel()), "/words 1000")).final_output
    assert out.split() == [f"w{i}" for i in range(1, 1001)]


def test_the_report_names_what_the_model_received():
    agent = Agent(name="A", instructions="Be brief.", tools=[get_weather], model=MirrorModel())
    items = [
        {"role": "user", "content": "earlier"},
        {"role": "assistant", "content": "answer"},
        {"role": "user", "content": "Hidden context for the agent (not shown to the user):\n<HiddenContext>\npage: intro\n</HiddenContext>"},
        {"role": "user", "content": "now"},
    ]
    out = run(Runner.run(agent, items)).final_output
    assert out.splitlines()[1:] == [
        '- instructions: "Be brief."',
        "- history: 2 earlier items (assistant 1, user 1)",
        "- context: a hidden context item (page)",
        "- tools: get_weather",
        '- you said: "now"',
    ]


def test_backend_selection(monkeypatch):
    assert resolve_backend().kind == "offline"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert (resolve_backend().kind, resolve_backend().model) == ("openai", "gpt-4.1-mini")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:1/v1")
    compatible = resolve_backend("llama3.2")
    assert compatible.kind == "compatible" and compatible.settings.include_usage is True
    assert "http://127.0.0.1:1/v1" in compatible.description and "llama3.2" in compatible.description
    assert resolve_backend(MirrorModel(name="m")).kind == "offline"


@pytest.fixture
def endpoint():
    server = FakeOpenAI()
    yield server
    server.close()


def test_openai_compatible_endpoint_three_turns_with_a_tool_call(make_lab, endpoint):
    lab = make_lab(base_url=endpoint.url, model="tiny", api_key="local-key", tools=[get_weather])
    assert lab.backend.kind == "compatible"
    t1 = lab.send_sync("hello")
    assert t1.error is None and t1.text == "echo: hello (2 messages)"
    t2 = lab.send_sync("call get_weather Oslo", t1.thread_id)
    assert t2.text == "The tool said: It is 21C and sunny in Oslo."
    t3 = lab.send_sync("thanks", t1.thread_id)
    assert t3.error is None and t3.text.startswith("echo: thanks")

    bodies = [r["body"] for r in endpoint.requests]
    assert len(bodies) == 4 and all(r["auth"] == "Bearer local-key" for r in endpoint.requests)
    # Turn 2 sends turn 1's reply back as a plain assistant string (Chat Completions accepts it).
    assert {"role": "assistant", "content": "echo: hello (2 messages)"} in bodies[1]["messages"]
    assert bodies[1]["stream_options"] == {"include_usage": True}
    assert [m["role"] for m in bodies[2]["messages"]][-2:] == ["assistant", "tool"]
    replies = lab.sql("SELECT item_id FROM items WHERE type = 'assistant_message'").item_id.tolist()
    assert len(replies) == len(set(replies)) == 3 and "__fake_id__" not in replies
    usage = lab.sql("SELECT input_tokens, output_tokens FROM turns ORDER BY started_at")
    assert usage.values.tolist() == [[11, 7], [22, 14], [11, 7]]
    generation = lab.sql("SELECT count(*) AS n FROM spans WHERE span_type = 'generation' AND input_tokens = 11")
    assert generation.n[0] == 4


def test_the_offline_name_pins_the_offline_model_even_with_a_key(monkeypatch):
    from chatkit_lab.models import MirrorModel, resolve_backend

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-used")
    assert resolve_backend(None).kind == "openai"
    pinned = resolve_backend("offline")
    assert pinned.kind == "offline" and isinstance(pinned.model, MirrorModel)
