"""Request context, context providers, injection strategies, the inspector and redaction."""

import json

import pytest

from chatkit_lab import ChatLabError
from chatkit_lab.context import STRATEGIES, build_context, render

from .conftest import found_in_database


def _message(text, page=None, user_info=None):
    metadata = {}
    if page is not None:
        metadata["pageContext"] = page
    if user_info is not None:
        metadata["userInfo"] = user_info
    return {
        "type": "threads.create", "metadata": metadata,
        "params": {"input": {"content": [{"type": "input_text", "text": text}], "attachments": [], "inference_options": {}}},
    }


def test_build_context_takes_identity_metadata_and_headers_but_no_credentials():
    body = json.dumps(_message("hi", page={"title": "Sales"}, user_info={"name": "Spoofed", "id": "mallory"}))
    ctx = build_context(
        body, user_id="alice", claims={"sub": "alice", "name": "Alice"},
        headers={"Authorization": "Bearer abc.def.ghi", "Cookie": "token=x", "X-Notebook": "n1"}, cookies={"token": "x"},
    )
    assert ctx.user == {"name": "Alice", "id": "alice"}  # verified claims win over what the client says
    assert ctx.page == {"title": "Sales"}
    assert ctx.headers == {"x-notebook": "n1"}
    assert "abc.def" not in repr(ctx) and "token" not in repr(ctx)


def test_render_fills_dotted_placeholders_and_leaves_json_alone():
    out = render('Hi {user.name} on {page.title}; {missing.key}. Reply like {"ok": true}.', {"user": {"name": "Ada"}, "page": {"title": "Q3"}})
    assert out == 'Hi Ada on Q3; . Reply like {"ok": true}.'


def test_a_placeholder_may_name_a_default_for_a_missing_or_empty_value():
    template = "You help {user.name|the user} with {page.title|this notebook}{page.path|}."
    assert render(template, {}) == "You help the user with this notebook."
    assert render(template, {"user": {"name": ""}, "page": {"title": "Churn"}}) == "You help the user with Churn."
    assert render(template, {"user": {"name": "Ada"}}) == "You help Ada with this notebook."


def test_every_strategy_gets_the_context_to_the_model_and_the_inspector_shows_where(make_lab):
    lab = make_lab(instructions="Help {user.name}.")
    lab.context.update(project="apollo")
    lab.context.provide(lambda: {"rows": 3})
    where = {}
    for strategy in STRATEGIES:
        lab.context.strategy = strategy
        turn = lab.send_sync("What do you see?")
        assert turn.error is None
        where[strategy] = next(line for line in turn.text.splitlines() if line.startswith("- context:"))
        seen = lab.inspect(turn)
        assert seen.calls[0].strategy == strategy
        assert seen.context["project"] == "apollo" and seen.context["rows"] == 3
        if strategy == "instructions":
            assert "<context>" in seen.instructions and "project: apollo" in seen.instructions
        if strategy == "hidden":
            assert "<HiddenContext>" in seen.input[-2]["content"][0]["text"]
        if strategy == "input":
            assert seen.input[-2]["role"] == "developer"
        if strategy == "tool":
            assert "get_context" in seen.tools and len(seen.calls) == 2
            assert "project: apollo" in seen.calls[1].input[-1]["output"]
        if strategy != "instructions":
            assert "<context>" not in (seen.instructions or "")
    assert where == {
        "instructions": "- context: in the instructions (project, rows)",
        "hidden": "- context: a hidden context item (project, rows)",
        "input": "- context: an app-context item (project, rows)",
        "tool": "- context: the get_context tool (project, rows)",
        "none": "- context: none",
    }
    with pytest.raises(ChatLabError, match="Unknown context strategy"):
        lab.context.strategy = "telepathy"


def test_providers_see_live_state_and_a_failing_one_does_not_fail_the_turn(make_lab):
    lab = make_lab()
    state = {"n": 1}
    lab.context.provide(lambda: {"n": state["n"]})

    def broken():
        raise KeyError("df")

    lab.context.provide(broken)
    first = lab.send_sync("one")
    state["n"] = 2
    second = lab.send_sync("two", first.thread_id)
    assert lab.inspect(first).context["n"] == 1 and lab.inspect(second).context["n"] == 2
    assert "KeyError" in lab.inspect(second).context["broken_error"]
    assert second.error is None


def test_a_failing_providers_error_reaches_the_model_without_a_key_it_quotes(make_lab):
    """Only the stored copy was redacted: the model read the key the provider's error quoted."""
    from .test_guardrails import Scripted

    model = Scripted("ok")
    lab = make_lab(model=model)

    def crm():
        raise RuntimeError("401 from the CRM: Incorrect API key provided: sk-live-abcdefghijklmnopqrstuv")

    lab.context.provide(crm)
    lab.send_sync("hi")
    seen = model.inputs[0]["instructions"]
    assert "crm_error: The context provider crm failed: RuntimeError: 401 from the CRM" in seen and "sk-live-abcdef" not in seen


def test_page_context_from_the_request_reaches_the_template_and_the_record(make_lab):
    lab = make_lab(instructions="You help with the notebook {page.title}.", context_strategy="none")
    events = lab.request_sync(_message("hi", page={"title": "Churn analysis", "headings": ["Load", "Model"]}))
    reply = next(e for e in events if e["type"] == "thread.item.done" and e["item"]["type"] == "assistant_message")
    assert 'instructions: "You help with the notebook Churn analysis."' in reply["item"]["content"][0]["text"]
    seen = lab.inspect()
    assert seen.context["page"]["headings"] == ["Load", "Model"]
    assert "Churn analysis" in seen._repr_html_()


def test_the_inspector_escapes_html_and_explains_a_missing_turn(make_lab):
    lab = make_lab()
    with pytest.raises(ChatLabError, match="No turn has called the model yet: send a message first"):  # was "No turn found for None"
        lab.inspect()
    turn = lab.send_sync("<img src=x onerror=alert(1)>")
    html = lab.inspect(turn)._repr_html_()
    assert "<img" not in html and "&lt;img" in html
    with pytest.raises(ChatLabError, match="No turn found"):
        lab.inspect("thr_nope")
    df = lab.model_inputs_df()
    assert list(df.turn_id.unique()) == [lab.inspect(turn).turn_id]
    assert lab.turns_df().status.tolist() == ["completed"]


SECRET = "crm-SECRET-7f3a9c21"


def test_a_secret_in_the_prompt_is_redacted_everywhere_it_would_be_written(make_lab, db_path, caplog):
    lab = make_lab(instructions=f"Use the CRM token {SECRET} when you call tools.")
    lab.secrets.set("crm_token", SECRET)
    turn = lab.send_sync(f"my token is {SECRET}; also Bearer abcdefghijklmnop and sk-abcdefghijklmnopqrstuvwx")
    assert SECRET in turn.text  # the live reply is the user's own; what is written is not
    seen = lab.inspect(turn)
    assert "[REDACTED:crm_token]" in seen.instructions  # the inspector shows the leak, not the token
    import logging

    logging.getLogger("chatkit_lab").warning("leaking %s", SECRET)
    lab.close()
    assert SECRET not in caplog.text and "[REDACTED:crm_token]" in caplog.text
    for needle in (SECRET, "abcdefghijklmnop", "sk-abcdefghij"):
        assert found_in_database(db_path, needle) == []
    assert {"items", "spans", "model_inputs"} <= set(found_in_database(db_path, "[REDACTED:crm_token]"))
    assert "items" in found_in_database(db_path, "[REDACTED:bearer]")
    assert "items" in found_in_database(db_path, "[REDACTED:api_key]")
