"""Workflows: the graph and its load-time checks, CEL, running node by node, in the chat, approvals, versions."""

import json

import pytest

from chatkit_lab import ChatLab
from chatkit_lab.errors import ChatLabError, NotFoundError
from chatkit_lab.workflows import (
    AgentNode,
    Edge,
    EndNode,
    GuardrailsNode,
    IfElseNode,
    SetStateNode,
    StartNode,
    StateVariable,
    TransformNode,
    WhileNode,
    Workflow,
    WorkflowError,
    chain,
    templates,
)

from .test_guardrails import Scripted

EMAIL = "ada.lovelace@example.com"


def linear(*nodes, **kwargs):
    return Workflow(name="w", nodes=[StartNode("start"), *nodes], edges=chain("start", *(n.id for n in nodes)), **kwargs)


def support():
    return templates.customer_support()


# -- the graph ---------------------------------------------------------------------------------
def test_a_workflow_saves_and_loads_back_exactly(tmp_path):
    wf = support()
    path = wf.save(tmp_path / "support.json")
    again = Workflow.load(path)
    assert again == wf and again.to_json() == path.read_text() and Workflow.model_validate_json(path.read_text()) == wf
    assert again.content_hash() == wf.content_hash() and len(wf.content_hash()) == 64
    assert [n.type for n in again.nodes][:4] == ["start", "guardrails", "agent", "if_else"]
    changed = again.model_copy(update={"description": "other"}).checked()
    assert changed.content_hash() != wf.content_hash()


def _shape(**changes):
    base = {"name": "x", "nodes": [{"type": "start", "id": "s"}, {"type": "end", "id": "e"}], "edges": [{"source": "s", "target": "e"}]}
    return json.dumps({**base, **changes})


def _route(condition, state=()):
    return _shape(nodes=[{"type": "start", "id": "s"}, {"type": "if_else", "id": "route", "branches": {"a": condition}}, {"type": "end", "id": "e"}],
                  edges=[{"source": "s", "target": "route"}, {"source": "route", "target": "e", "label": "a"}], state=list(state))


@pytest.mark.parametrize(("text", "expected"), [
    (_shape(edges=[{"source": "s", "target": "nowhere"}]), "edge s → nowhere names node 'nowhere', which does not exist"),
    (_shape(edges=[]), "node 'e' (end) cannot be reached from 's'"),
    (_shape(nodes=[{"type": "start", "id": "s"}, {"type": "robot", "id": "r"}]), "unknown node type 'robot'"),
    (_shape(nodes=[{"type": "start", "id": "s"}, {"type": "agent", "id": "a"}, {"type": "agent", "id": "b"}],
            edges=[{"source": "s", "target": "a"}, {"source": "a", "target": "b"}, {"source": "b", "target": "a"}]),
     "the loop a → b → a is not made by a while node"),
    (_route("state.x =="), "Node 'route' (if_else), branch 'a': `state.x ==` is not valid CEL: Syntax error"),
    (_route("answer == 1"), "Node 'route' (if_else), branch 'a': `answer == 1` reads `answer`, which is not a variable here"),
    (_route("state.missing == 1.0", [{"name": "count", "type": "number"}]), "reads `state.missing`, which does not exist (known: count)"),
    (_route("nodes.ghost.output_text == ''"), "reads `nodes.ghost`, which does not exist"),
    (_route("workflow.input == ''"), "reads `workflow.input`, which does not exist (known: input_as_text)"),
    (_shape(edges=[{"source": "s", "target": "e", "label": "yes"}]), "node 's' (start) cannot leave by 'yes'"),
    (_shape(nodes=[{"type": "start", "id": "s"}, {"type": "agent", "id": "a", "temperature": 1}]), "AgentNode('a'): temperature: Extra inputs are not permitted"),
    (_shape(nodes=[{"type": "start", "id": "s"}, {"type": "agent", "id": "a", "output_schema": {"type": "object", "properties": {"n": {"type": "int"}}}}]),
     "agent 'a': output_schema is not a valid JSON Schema: 'int' is not valid under any of the given schemas (at properties/n/type)"),
    (_shape(nodes=[{"type": "start", "id": "s"}, {"type": "set_state", "id": "t", "assignments": {"n": "1"}}], edges=[{"source": "s", "target": "t"}]),
     "set_state 't' assigns 'n', which is not a declared state variable"),
    (_shape(nodes=[{"type": "start", "id": "s"}, {"type": "guardrails", "id": "g", "config": {"guardrails": [{"name": "Nope", "config": {}}]}}],
            edges=[{"source": "s", "target": "g"}]), "Guardrails node 'g': Guardrails config: guardrails[0] names an unknown check 'Nope'"),
    (_shape(state=[{"name": "n", "type": "number", "default": "three"}]), "state variable 'n' is a number, but its default is \"three\""),
    # The SDK dropped an unknown setting silently, and checked the values only when the node ran.
    (_shape(nodes=[{"type": "start", "id": "s"}, {"type": "agent", "id": "a", "model_settings": {"temprature": 0.2}}]),
     "agent 'a': model_settings has no 'temprature'; the Agents SDK's settings are temperature, top_p"),
    (_shape(nodes=[{"type": "start", "id": "s"}, {"type": "agent", "id": "a", "model_settings": {"temperature": "hot"}}]),
     "agent 'a': model_settings: temperature: Input should be a valid number"),
    (_shape(nodes=[{"type": "start", "id": "s"}, {"type": "while", "id": "w", "condition": "true"}, {"type": "end", "id": "e"}],
            edges=[{"source": "s", "target": "w"}, {"source": "w", "target": "e", "label": "done"}]), "while 'w' has no body edge"),
])
def test_what_is_wrong_with_a_workflow_is_one_sentence_when_it_loads(text, expected):
    with pytest.raises(WorkflowError) as caught:
        Workflow.model_validate_json(text)
    assert expected in str(caught.value)
    assert isinstance(caught.value, ChatLabError)


def test_a_loop_through_a_while_nodes_body_is_allowed_and_strings_are_not_read_as_names():
    wf = templates.research_assistant()
    assert [e.label for e in wf.edges if e.source == "loop"] == ["body", "done"]
    ok = Workflow.model_validate_json(_route('"state.nothing" == workflow.input_as_text && [1, 2].exists(v, v > 1)'))
    assert ok.node("route").branches["a"].startswith('"state.nothing"')


def test_a_bad_file_says_so(tmp_path):
    with pytest.raises(ChatLabError, match="Cannot read the workflow file"):
        Workflow.load("/nonexistent/wf.json")
    with pytest.raises(ChatLabError, match="Cannot write the workflow file .*: Is a directory"):  # was an IsADirectoryError
        support().save(tmp_path)
    with pytest.raises(ChatLabError, match="wf.run takes the user's message as text, not NoneType"):  # None ran as the message
        support().run_sync(None)


# -- running -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "route", "agent"), [
    ("My invoice has a billing error", "billing", "billing_agent"),
    ("A technical problem: the app crashes", "technical", "technical_agent"),
    ("What are your opening hours? general question", "else", "general_agent"),
])
def test_the_support_template_routes_deterministically_offline(text, route, agent):
    result = support().run_sync(text)
    assert result.status == "completed" and result.path == ["start", "pii", "classify", "route", agent, "grounded", "end"]
    assert result["route"].edge == route
    parsed = result["classify"].output["output_parsed"]
    assert parsed["classification"] == route.replace("else", "general") and isinstance(parsed["confidence"], float)
    assert json.loads(result["classify"].output["output_text"]) == parsed
    # Offline, the hallucination check cannot run: its verdict says so and lets the reply through.
    grounded = result["grounded"]
    assert grounded.edge == "pass" and grounded.output["checks"][0]["execution_failed"] is True


def test_a_guardrails_node_masks_what_later_agents_receive_and_fails_by_its_own_edge():
    model = Scripted("Done.")
    wf = Workflow(name="m", nodes=[StartNode("start"), GuardrailsNode("pii", config={"guardrails": [{"name": "Contains PII", "config": {"entities": ["EMAIL_ADDRESS"]}}]}),
                                   AgentNode("reply", instructions="Reply."), EndNode("end")],
                  edges=[*chain("start", "pii"), Edge("pii", "reply", "pass"), *chain("reply", "end")])
    result = wf.run_sync(f"write to {EMAIL}", model=model)
    assert result["pii"].output["safe_text"] == "write to <EMAIL_ADDRESS>"
    assert EMAIL not in json.dumps(model.inputs) and "<EMAIL_ADDRESS>" in json.dumps(model.inputs)
    blocking = {"guardrails": [{"name": "Contains PII", "config": {"entities": ["EMAIL_ADDRESS"], "block": True}}]}
    wf2 = Workflow(name="b", nodes=[StartNode("start"), GuardrailsNode("pii", config=blocking), EndNode("stop", output="No: {{input.output_text}}")],
                   edges=[*chain("start", "pii"), Edge("pii", "stop", "fail")])
    result = wf2.run_sync(f"write to {EMAIL}")
    assert result["pii"].edge == "fail" and result["pii"].output["failed"] is True
    assert [f["guardrail_name"] for f in result["pii"].output["failures"]] == ["Contains PII"]
    assert result.output_text == "No: Stopped by Contains PII." and EMAIL not in json.dumps(result["pii"].output)


def test_state_loops_and_transforms_follow_cel_not_python():
    wf = templates.research_assistant(rounds=2)
    result = wf.run_sync("octopuses")
    assert result.path == ["start", "set_topic", "loop", "research", "note", "loop", "research", "note", "loop", "write", "end"]
    assert result.state["round"] == 2.0 and len(result.state["notes"]) == 2 and result.state["topic"] == "octopuses"
    guard = Workflow(name="g", state=[StateVariable("n", "number", 0)], nodes=[
        StartNode("start"), WhileNode("loop", condition="true", max_iterations=3), SetStateNode("inc", assignments={"n": "state.n + 1.0"}),
        TransformNode("shape", expressions={"count": "state.n", "half": "int(state.n) / 2", "said": "workflow.input_as_text"}), EndNode("end"),
    ], edges=[*chain("start", "loop"), Edge("loop", "inc", "body"), *chain("inc", "loop"), Edge("loop", "shape", "done"), *chain("shape", "end")])
    result = guard.run_sync("hi")
    assert result["loop"].output == {"iterations": 3, "stopped_at_max_iterations": True}
    assert result.output == {"count": 3.0, "half": 1, "said": "hi"}  # CEL: 3 / 2 == 1


def test_a_cel_error_at_run_time_fails_the_node_with_a_sentence():
    wf = Workflow(name="t", state=[StateVariable("n", "number", 0), StateVariable("s", "string", "")], nodes=[
        StartNode("start"), IfElseNode("check", branches={"truthy": "state.s"}), EndNode("end")],
        edges=[*chain("start", "check"), Edge("check", "end", "truthy"), Edge("check", "end", "else")])
    result = wf.run_sync("x")
    assert result.status == "failed" and result["check"].status == "failed"
    assert "`state.s` must be true or false, but gave \"\" (CEL has no truthiness" in result.error
    mixed = linear(SetStateNode("inc", assignments={"n": "state.n + 1"}), EndNode("end"), state=[StateVariable("n", "number", 0)])
    assert "CEL does not mix int and double: write 1.0" in mixed.run_sync("x").error



def test_set_state_keeps_each_variables_type_and_arithmetic_errors_are_sentences():
    state = [StateVariable("n", "number", 0), StateVariable("done", "boolean", False), StateVariable("tags", "list", [])]
    counted = linear(SetStateNode("set", assignments={"n": "size(workflow.input_as_text)", "done": "true", "tags": "['a']"}),
                     SetStateNode("inc", assignments={"n": "state.n + 1.0"}), EndNode("end"), state=state)
    result = counted.run_sync("four")
    assert result.status == "completed" and result.state == {"n": 5.0, "done": True, "tags": ["a"]}  # an int becomes a double
    wrong = linear(SetStateNode("set", assignments={"done": "1"}), EndNode("end"), state=state)
    result = wrong.run_sync("x")
    assert result.status == "failed" and result.state["done"] is False
    assert "Node 'set': state.done is a boolean, but `1` gave 1; convert it" in result.error
    for expression, said in (("1 / 0", "division by zero"), ("9223372036854775807 + 1", "overflow")):
        failed = linear(SetStateNode("set", assignments={"n": expression}), EndNode("end"), state=state).run_sync("x")
        assert failed.error.startswith(f"Node 'set': `{expression}` failed:") and said in failed.error

def test_an_expression_is_given_only_the_variables_it_reads():
    from chatkit_lab.workflows.expressions import ExpressionError, Names, compile_expression

    # A value the CEL library cannot convert, in a node's output: only an expression that reads
    # ``nodes`` meets it (every value given is converted, so a large scope cost every evaluation).
    scope = {"input": {"n": 1}, "state": {"round": 1.0}, "workflow": {"input_as_text": "x"}, "nodes": {"fetch": {"at": object()}}}
    names = Names(state=["round"], nodes=["fetch"])
    assert compile_expression("state.round < 3.0", names, "loop").roots == {"state"}
    assert compile_expression("state.round < 3.0 && input.n == 1", names, "loop").condition(scope) is True
    with pytest.raises(ExpressionError, match="failed"):
        compile_expression("has(nodes.fetch.at)", names, "check").evaluate(scope)


def test_a_missing_tool_or_a_hosted_one_offline_fails_that_node_not_the_kernel():
    result = linear(AgentNode("a", tools=["lookup_order"]), EndNode("end")).run_sync("x")
    assert result.status == "failed" and "uses the tool 'lookup_order', which this lab does not have" in result.error
    result = linear(AgentNode("a", tools=[{"type": "file_search", "vector_store_ids": ["vs_1"]}]), EndNode("end")).run_sync("x")
    assert "needs OpenAI vector stores" in result.error and result["a"].status == "failed"


def test_an_approval_pauses_a_run_from_a_cell_and_resumes_by_its_edge():
    wf = templates.customer_service()
    paused = wf.run_sync("I want to return_item these shoes")
    assert paused.status == "paused" and paused.path[-1] == "approve_return" and paused.approval.startswith("Approve this return?")
    approved = pytest.importorskip("asyncio").run(paused.resume("approve"))
    assert approved.status == "completed" and approved.path[-2:] == ["approved", "return_done"] and approved.state["return_approved"] is True
    rejected = wf.run_sync("I want to return_item these shoes", approvals={"approve_return": "reject"})
    assert rejected.output_text.startswith("The return was not approved")


# -- in the chat -------------------------------------------------------------------------------
def _done(events, kind):
    return [e["item"] for e in events if e["type"] == "thread.item.done" and e["item"]["type"] == kind]


def test_a_workflow_answers_the_chat_node_by_node_and_logs_every_node(db_path):
    lab = ChatLab(db_path, workflow=support(), warm=False)
    try:
        turn = lab.send_sync(f"My billing invoice is wrong, write to {EMAIL}")
        tasks = [t["title"] for w in _done(turn.events, "workflow") for t in w["workflow"]["tasks"]]
        assert tasks[:3] == [t for t in tasks[:3] if " · " in t] and tasks[0].startswith("Mask PII · guardrails")
        assert any(t.startswith("Classifier · agent") for t in tasks) and any(t.startswith("Hallucination check · guardrails") for t in tasks)
        reply = _done(turn.events, "assistant_message")
        assert len(reply) == 1 and "You are a billing specialist" in reply[0]["content"][0]["text"]  # only the shown agent replies
        nodes = lab.nodes_df()
        assert nodes.node_id.tolist() == ["start", "pii", "classify", "route", "billing_agent", "grounded", "end"]
        assert set(nodes.status) == {"completed"} and nodes.edge.fillna("-").tolist()[1:4] == ["pass", "-", "billing"]
        assert json.loads(nodes.output[2])["output_parsed"]["classification"] == "billing" and nodes.model[2] == "gpt-4.1-mini"
        assert nodes.workflow_name.unique().tolist() == ["customer-support"] and nodes.workflow_version.isna().all()  # a draft
        spans = lab.sql("SELECT name, data FROM spans WHERE span_type = 'custom' AND json_extract_string(data, '$.data.node_id') IS NOT NULL")
        data = json.loads(spans.data[0])["data"]
        assert data["workflow_id"] == "customer-support" and data["workflow_version"] == "draft" and data["__trace_source__"] == "agent-builder"
        assert set(nodes.span_id) <= set(lab.sql("SELECT span_id FROM spans").span_id)
        turns = lab.turns_df()
        assert turns.agent.tolist() == ["customer-support"] and turns.status.tolist() == ["completed"]
        thread = lab.sql("SELECT metadata FROM threads").metadata[0]
        assert json.loads(thread)["workflow"]["name"] == "customer-support"
    finally:
        lab.close()
    # The PII node masks what the lab writes: nothing in the file has the address.
    assert EMAIL.encode() not in db_path.read_bytes()


def test_a_failing_node_says_which_and_why_in_the_chat(make_lab):
    lab = make_lab(workflow=linear(AgentNode("lookup", name="Order lookup", tools=["lookup_order"]), EndNode("end")), warm=False)
    turn = lab.send_sync("where is my order")
    error = [e for e in turn.events if e["type"] == "error"]
    assert error and "Order lookup" in error[0]["message"] and "lookup_order" in error[0]["message"]
    task = _done(turn.events, "workflow")[0]["workflow"]["tasks"][-1]
    assert task["title"] == "Order lookup · agent failed"
    assert lab.turns_df().status.tolist() == ["error"] and lab.nodes_df().status.tolist() == ["completed", "failed"]


def _click(lab, turn, which="Approve", user_id=None):
    widget = _done(turn.events, "widget")[0]
    button = next(b for b in widget["widget"]["children"][2]["children"] if b["label"] == which)
    body = {"type": "threads.custom_action", "params": {"thread_id": turn.thread_id, "item_id": widget["id"], "action": button["onClickAction"]}}
    return lab.request_sync(body, user_id=user_id)


def test_an_approval_in_the_chat_is_stored_resumed_once_and_survives_a_restart(db_path):
    lab = ChatLab(db_path, workflow=templates.customer_service(), warm=False)
    turn = lab.send_sync("I want to return_item my shoes")
    assert _done(turn.events, "widget")[0]["widget"]["children"][1]["value"].startswith("Approve this return?")
    assert lab.turns_df().status.tolist() == ["paused"]
    assert _click(lab, turn, user_id="mallory")[-1]["type"] == "error"  # another user's thread is not found
    lab.close()
    lab = ChatLab(db_path, workflow=templates.customer_service(), warm=False)  # a kernel restart
    try:
        events = _click(lab, turn)
        replaced = [e for e in events if e["type"] == "thread.item.replaced"][0]["item"]
        assert replaced["widget"]["children"][-1]["value"] == "Approved by local"
        assert "approval_buttons" not in json.dumps(replaced["widget"])  # the buttons are gone
        assert _done(events, "assistant_message")[-1]["content"][0]["text"] == "Your return is approved; a label is on its way."
        again = _click(lab, turn)
        assert [e["type"] for e in again] == ["stream_options", "notice"] and "answered already" in again[-1]["message"]
        assert lab.nodes_df().node_id.tolist()[-3:] == ["approve_return", "approved", "return_done"]
        assert lab.sql("SELECT status, decision FROM workflow_runs").values.tolist() == [["decided", "approve"]]
        assert lab.turns_df().status.tolist() == ["paused", "completed"]
    finally:
        lab.close()


def test_a_rejected_approval_takes_the_reject_edge(make_lab):
    lab = make_lab(workflow=templates.customer_service(), warm=False)
    turn = lab.send_sync("I want to return_item my shoes")
    lab.use_workflow(None)
    assert "runs no workflow now" in _click(lab, turn, "Reject")[-1]["message"]  # the paused run waits
    lab.use_workflow(templates.customer_service())
    events = _click(lab, turn, "Reject")
    assert _done(events, "assistant_message")[-1]["content"][0]["text"].startswith("The return was not approved")


# -- versions ----------------------------------------------------------------------------------
def test_published_versions_are_numbered_immutable_and_can_be_rolled_back(make_lab):
    lab = make_lab(warm=False)
    wf = support()
    assert lab.publish(wf, "first") == 1 and lab.publish(wf) == 1  # the same graph is the same version
    changed = wf.model_copy(update={"description": "v2"}).checked()
    assert lab.publish(changed) == 2
    versions = lab.workflow_versions_df()
    assert versions[["version", "is_default"]].values.tolist() == [[1, False], [2, True]] and versions.note[0] == "first"
    assert lab.use_workflow("customer-support").version == 2
    lab.rollback("customer-support", 1)
    assert lab.use_workflow("customer-support@2").workflow == changed and lab.use_workflow("customer-support").version == 1
    lab.send_sync("billing question")
    assert lab.nodes_df().workflow_version.unique().tolist() == [1]
    with pytest.raises(NotFoundError, match="has no version 7"):
        lab.use_workflow("customer-support@7")
    with pytest.raises(NotFoundError, match="No published workflow 'nope'"):
        lab.use_workflow("nope")
    lab.use_workflow(None)
    assert lab.workflow is None and "offline model" in lab.send_sync("hi").text


def test_publish_takes_a_json_path_as_use_workflow_does_and_refuses_anything_else(make_lab, tmp_path):
    """lab.publish("support.json") failed with AttributeError: 'str' object has no attribute 'content_hash'."""
    lab = make_lab(warm=False)
    path = tmp_path / "support.json"
    support().save(path)
    assert lab.publish(str(path)) == 1 and lab.publish(path) == 1
    with pytest.raises(ChatLabError, match="lab.publish takes a Workflow or a .json path, not 'customer-support'."):
        lab.publish("customer-support")


def test_a_diff_between_versions_lists_added_removed_and_changed_nodes(make_lab):
    lab = make_lab(warm=False)
    first = support()
    data = first.model_dump(by_alias=True)
    data["nodes"] = [n for n in data["nodes"] if n["id"] != "grounded"]
    data["edges"] = [e for e in data["edges"] if "grounded" not in (e["source"], e["target"])] + [
        {"source": f"{k}_agent", "target": "end", "label": None} for k in ("billing", "technical", "general")]
    for node in data["nodes"]:
        if node["id"] == "billing_agent":
            node["instructions"] = "Billing, briefly."
        if node["id"] == "route":
            node["branches"]["billing"] = 'input.output_parsed.classification == "billing" && input.output_parsed.confidence > 0.5'
    data["nodes"].append({"id": "audit", "type": "note", "text": "v2 drops the hallucination check"})
    second = Workflow.model_validate(data)
    assert lab.publish(first) == 1 and lab.publish(second) == 2
    changes = lab.workflow_diff("customer-support@1", "customer-support@2")
    assert changes.added == ["audit"] and changes.removed == ["grounded"] and changes.changed == ["route", "billing_agent"]
    fields = {(r["id"], r["field"]) for r in changes.rows if r["change"] == "changed"}
    assert ("billing_agent", "instructions") in fields and ("route", "branches") in fields
    edges = {(r["id"], r["change"]) for r in changes.rows if r["what"] == "edge"}
    assert ("billing_agent → end", "added") in edges and ("grounded → end", "removed") in edges
    assert "customer-support@1 → customer-support@2: 1 nodes added, 1 removed, 2 changed" in str(changes)
    assert not first.diff(first) and list(changes.df.columns) == ["what", "id", "change", "field", "before", "after"]


def test_replay_reruns_a_thread_on_another_version_for_the_diff(make_lab):
    lab = make_lab(warm=False)
    first = support()
    second = first.model_copy(update={"nodes": [n.model_copy(update={"instructions": "BILLING V2"}) if n.id == "billing_agent" else n
                                                for n in first.nodes]}).checked()
    lab.publish(first)
    lab.publish(second)
    lab.use_workflow("customer-support@1")
    thread = lab.send_sync("billing: my invoice is wrong").thread_id
    replayed = lab.replay(thread, workflow="customer-support@2").run_sync()
    assert "BILLING V2" in replayed.steps[0].reply and "BILLING V2" not in lab.turns_df(thread).reply_text[0]
    versions = lab.nodes_df().groupby("thread_id").workflow_version.first().to_dict()
    assert versions == {thread: 1, replayed.thread_id: 2}
    assert json.loads(lab.sql("SELECT overrides FROM lineage").overrides[0]) == {"workflow": "customer-support@2"}
    assert lab.diff(thread, replayed.thread_id).df.same_reply.tolist() == [False]


def test_stop_during_an_agent_node_keeps_what_was_streamed_and_records_the_cancel(make_lab):
    import asyncio

    from chatkit_lab.context import build_context
    from chatkit_lab.models import MirrorModel
    from chatkit_lab.transport.requests import handle_request, parse_sse

    lab = make_lab(model=MirrorModel(delay=0.005), workflow=linear(AgentNode("writer", instructions="Write."), EndNode("end")), warm=False)
    thread = lab.send_sync("hello").thread_id

    async def stream_then_cancel():
        body = json.dumps({"type": "threads.add_user_message", "params": {"thread_id": thread, "input": {
            "content": [{"type": "input_text", "text": "/words 3000"}], "attachments": [], "inference_options": {}}}})
        reply = await handle_request(lab.server, body, build_context(body, user_id="local"))
        deltas = 0

        async def consume():
            nonlocal deltas
            async for chunk in reply.stream:
                deltas += sum(1 for e in parse_sse(chunk) if e["type"] == "thread.item.updated" and e["update"]["type"].endswith("text_delta"))

        task = asyncio.create_task(consume())
        while deltas < 20:
            await asyncio.sleep(0.005)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    lab.runtime.loop.call(stream_then_cancel(), timeout=30)
    lab.runtime.call(asyncio.sleep(0.2))
    kept = lab.sql("SELECT text FROM items WHERE thread_id = ? AND type = 'assistant_message' ORDER BY created_at", [thread]).text.tolist()
    assert len(kept) == 2 and kept[1].startswith("w1 w2") and "w3000" not in kept[1]
    assert lab.turns_df(thread).status.tolist() == ["completed", "cancelled"]
    assert lab.nodes_df(thread).status.tolist()[-1] == "cancelled"


def test_an_mcp_node_calls_the_labs_mcp_server_with_the_credential_injected_server_side(make_lab, db_path):
    import subprocess
    import sys

    from chatkit_lab.auth import mcp_server
    from chatkit_lab.workflows import MCPNode

    from .conftest import found_in_database, free_port
    from .test_mcp import SERVER, TOKEN

    proc = subprocess.Popen([sys.executable, str(SERVER), str(free_port())], stdout=subprocess.PIPE, text=True, env={"CRM_TOKEN": TOKEN, "PATH": ""})
    try:
        url = proc.stdout.readline().split()[1]
        wf = linear(MCPNode("orders", server="crm", tool="lookup_orders", arguments={"customer": "workflow.input_as_text"}),
                    EndNode("end", output="Orders: {{input.output_text}}"))
        lab = make_lab(mcp_servers=[mcp_server(url, credential="crm_token", name="crm")], workflow=wf, warm=False)
        lab.secrets.set("crm_token", TOKEN, user_id="local")
        assert lab.send_sync("acme").text == "Orders: acme: 2 open orders (#1001 anvils, #1002 rockets)"
        assert "unauthorized" in lab.send_sync("acme", user_id="bob").text.lower()  # bob has no token
        missing = linear(MCPNode("orders", server="erp", tool="x"), EndNode("end"))
        lab.use_workflow(missing)
        assert "calls the MCP server 'erp', which this lab is not connected to (its servers: crm)" in lab.send_sync("x").error
        lab.close()
        assert found_in_database(db_path, TOKEN) == []
    finally:
        proc.kill()
        proc.wait(10)


def test_an_approval_can_be_answered_from_a_cell(make_lab):
    lab = make_lab(workflow=templates.customer_service(), warm=False)
    thread = lab.send_sync("I want to return_item my shoes").thread_id
    with pytest.raises(ChatLabError, match="is waiting for 'bob'"):
        lab.decide_sync(thread, user_id="bob")
    with pytest.raises(ChatLabError, match="'approve' or 'reject', not 'maybe'"):
        lab.decide_sync(thread, "maybe")
    assert lab.decide_sync(thread, "reject").text.startswith("The return was not approved")
    with pytest.raises(ChatLabError, match="Nothing in thread .* is waiting for .local. to approve it"):
        lab.decide_sync(thread)


def test_a_structured_output_that_breaks_its_schema_fails_the_node_with_the_reason():
    schema = templates.classifier_schema("billing", "general")
    wf = linear(AgentNode("classify", output_schema=schema), EndNode("end"))
    result = wf.run_sync("x", model=Scripted('{"classification": "weather", "confidence": 0.4}'))
    assert result.status == "failed" and "does not match the node's schema: 'weather' is not one of ['billing', 'general']" in result.error
    result = wf.run_sync("x", model=Scripted("not json"))
    assert "the output is not JSON" in result.error


def test_run_from_a_cell_with_a_lab_uses_its_tools_and_writes_its_traces(make_lab):
    import asyncio

    from agents import function_tool

    @function_tool
    def lookup_order(order_id: str) -> str:
        """The order's status."""
        return f"order {order_id}: shipped"

    lab = make_lab(tools=[lookup_order], warm=False)
    wf = linear(AgentNode("clerk", tools=["lookup_order"]), EndNode("end"))
    result = asyncio.run(wf.run('call lookup_order {"order_id": "42"}', lab=lab))
    assert result.status == "completed" and result["clerk"].output["output_text"] == "Tool `lookup_order` returned: order 42: shipped"
    spans = lab.sql("SELECT name FROM spans WHERE trace_id = ?", [result.trace_id]).name.tolist()
    assert "clerk" in spans and "lookup_order" in spans  # the node span, the agent's and the tool's, in the lab's file


def test_a_chat_workflow_builds_an_agent_once_for_each_instructions_it_renders(make_lab):
    lab = make_lab()
    echo = Workflow(name="echo", nodes=[StartNode("start"), AgentNode("answer", instructions="Answer {{ workflow.input_as_text }} briefly."),
                                        EndNode("end")], edges=chain("start", "answer", "end"))
    lab.use_workflow(echo)
    replies = [lab.send_sync(text).text for text in ("apples", "pears", "apples")]
    assert all(f"Answer {text} briefly." in reply for text, reply in zip(("apples", "pears", "apples"), replies, strict=True))
    built = lab.server.workflow.agents
    assert sorted(instructions for _, instructions in built) == ["Answer apples briefly.", "Answer pears briefly."]
    lab.use_workflow(echo)  # another chat workflow builds its own
    assert lab.server.workflow.agents == {}
