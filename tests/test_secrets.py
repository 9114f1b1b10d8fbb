"""Redaction that holds wherever text goes: every logger, any JSON escaping depth, non-ASCII
values, short values, attachment names."""

import json
import logging

import pytest
from agents import Agent, function_tool
from agents.testing import ModelStep, ScriptedModel, assistant_message, function_call

from chatkit_lab import ChatLabError, RequestContext
from chatkit_lab.auth.secrets import Secrets

from .conftest import found_in_database


def test_every_log_record_of_the_process_is_redacted_not_only_named_loggers(make_lab, caplog):
    lab = make_lab()
    lab.secrets.set("crm", "crm-Tok3n-4417aa")
    caplog.set_level(logging.INFO)
    for name in ("chatkit", "uvicorn.access", "some.user.module", ""):  # chatkit's own, a server's, anyone's
        logging.getLogger(name).warning("thread %s not found", "thr_crm-Tok3n-4417aa")
    try:
        raise ValueError("failed with crm-Tok3n-4417aa")
    except ValueError:
        logging.getLogger("chatkit.server").exception("boom")
    assert "crm-Tok3n-4417aa" not in caplog.text
    assert caplog.text.count("[REDACTED:crm]") >= 5  # four messages and the traceback (its message and source line)
    assert all("crm-Tok3n-4417aa" not in (r.exc_text or "") for r in caplog.records)


@pytest.mark.parametrize("value", ['pa"ss\\word-9971', "tökén-ünïcode-4411", 'mixé"d\\-ü-5521'])
def test_a_secret_is_redacted_at_any_escaping_depth_and_with_non_ascii(value):
    secrets = Secrets()
    secrets.watch(value, "tok")
    texts = [value]
    for _ in range(3):  # JSON in JSON in JSON: a tool's arguments inside a span inside a trace
        texts += [json.dumps(texts[-1]), json.dumps(texts[-1], ensure_ascii=False)]
    for text in texts:
        assert "[REDACTED:tok]" in secrets.redact(f"before {text} after"), text
        assert value not in secrets.redact(text)


def test_a_short_secret_is_refused_with_a_sentence_and_a_short_word_is_redacted_only_whole():
    secrets = Secrets()
    with pytest.raises(ChatLabError, match="shorter than 4 characters"):
        secrets.set("pin", "12")
    with pytest.raises(ChatLabError, match="The secret 'pin' is int, not a string"):  # was "shorter than 4 characters"
        secrets.set("pin", 12345678)
    secrets.set("pin", "4821")
    assert secrets.redact("the pin is 4821.") == "the pin is [REDACTED:pin]."
    assert secrets.redact("order 948213 ships") == "order 948213 ships"  # not inside other words
    with pytest.raises(ChatLabError, match="shorter than 4 characters"):
        secrets.set("pin", "12")
    assert secrets.for_user("alice") == {"pin": "4821"}  # a refused value was kept, and handed to tools unredacted
    for name, user_id, sentence in (("", None, "A secret's name is what tools read it by"), ("crm", "", "A user id is a non-empty string"),
                                    ("crm", 7, "A user id is a non-empty string")):  # stored under a key no request matches
        with pytest.raises(ChatLabError, match=sentence):
            secrets.set(name, "tok_abcdefghijkl", user_id=user_id)
    assert secrets.for_user("alice") == {"pin": "4821"}


def test_a_secret_with_quotes_in_tool_arguments_reaches_no_column(make_lab, db_path):
    value = 'q"uo\\te-ü-8812'
    def use(token: str) -> str:
        return "ok"

    script = ScriptedModel([ModelStep(output=[function_call("use", {"token": value}, call_id="c1")]), ModelStep(output=[assistant_message("done")])])
    lab = make_lab(agent=Agent(name="A", tools=[function_tool(use)], model=script))
    lab.secrets.set("tok", value)
    turn = lab.send_sync("go")
    assert turn.error is None
    lab.close()
    assert found_in_database(db_path, value) == []
    assert found_in_database(db_path, "ü-8812") == []  # no escaped form either
    assert "spans" in found_in_database(db_path, "[REDACTED:tok]")


def test_attachment_names_are_redacted(make_lab, db_path, tmp_path):
    lab = make_lab()
    lab.secrets.set("tok", "crm-AttachName-5531")
    created = lab.request_sync({"type": "attachments.create", "params": {"name": "notes crm-AttachName-5531.txt", "size": 3, "mime_type": "text/plain"}})
    lab.runtime.call(lab.store.write_attachment_bytes(created["id"], b"abc", RequestContext(user_id="local")))
    lab.export(tmp_path / "all.jsonl")
    lab.close()
    assert found_in_database(db_path, "crm-AttachName-5531") == []
    assert "crm-AttachName-5531" not in (tmp_path / "all.jsonl").read_text()


def test_what_everything_written_passes_through_follows_a_new_secret_or_mask_at_once(make_lab):
    from chatkit_lab.workflows import Edge, EndNode, GuardrailsNode, StartNode, Workflow

    lab = make_lab()
    text = "call me on +1 415 555 0132 with the code zq-7781-secret-value"
    assert lab.runtime.redact(text) == text  # remembered as it is
    lab.secrets.set("code", "zq-7781-secret-value")
    assert lab.runtime.redact(text) == "call me on +1 415 555 0132 with the code [REDACTED:code]"
    masking = Workflow(name="masking", nodes=[StartNode("start"), GuardrailsNode("pii", config={"guardrails": [{"name": "Contains PII", "config": {}}]}),
                                              EndNode("end")],
                       edges=[Edge("start", "pii"), Edge("pii", "end", "pass"), Edge("pii", "end", "fail")])
    lab.use_workflow(masking)
    assert lab.runtime.redact(text) == "call me on <PHONE_NUMBER> with the code [REDACTED:code]"
    lab.use_workflow(None)
    assert lab.runtime.redact(text) == "call me on +1 415 555 0132 with the code [REDACTED:code]"


def test_a_tools_error_shown_in_the_chat_names_the_tool_and_holds_no_secret(make_lab):
    """The error event carried the raw secret to the chat (only the turns row was redacted), and a tool's
    own exception was called "The agent is misconfigured"."""
    token = "tok-9f8e7d6c5b4a3210"

    @function_tool(failure_error_function=None)  # the tool's exception ends the turn
    def deploy(env: str) -> str:
        """Deploy."""
        raise RuntimeError(f"deploy with token {token} was refused")

    lab = make_lab(tools=[deploy], warm=False)
    lab.secrets.set("DEPLOY_TOKEN", token)
    turn = lab.send_sync('call deploy {"env": "prod"}')
    assert turn.error == "The tool `deploy` failed: deploy with token [REDACTED:DEPLOY_TOKEN] was refused"
    assert token not in json.dumps(turn.events) and [e["allow_retry"] for e in turn.events if e["type"] == "error"] == [True]
