"""Eval runs: a dataset through the lab, a workflow or overrides, stored, resumed and graded again."""

import _thread
import json
import re
import threading
import time

import pytest

from chatkit_lab.errors import ChatLabError
from chatkit_lab.evals import from_threads, to_finetuning
from chatkit_lab.workflows import templates

from .helpers.failing import fail_once
from .test_guardrails import Scripted

HAS = {"type": "string_check", "name": "has", "input": "{{ sample.output_text }}", "reference": "{{ item.expected }}", "operation": "like"}
SUPPORT = [{"input": "billing: I was charged twice", "expected_type": "billing"}, {"input": "technical: the app crashes", "expected_type": "technical"},
           {"input": "general: when do you open?", "expected_type": "billing"}]


def test_a_workflow_run_is_stored_linked_to_its_threads_and_summarised_as_openai_does(make_lab):
    lab = make_lab(warm=False)
    routed = [{"type": "trajectory:branch", "name": f"to_{kind}", "value": {"node": "route", "edge": kind}} for kind in ("billing",)]
    summary = lab.evaluate_sync(SUPPORT, target=templates.customer_support(), graders=[*routed, {"type": "latency", "name": "fast", "max": 5000}],
                                progress=False).summary
    assert summary["status"] == "completed" and summary["name"] == "items × customer-support@draft"
    assert summary["result_counts"] == {"total": 3, "passed": 1, "failed": 2, "errored": 0}
    assert summary["per_testing_criteria_results"] == [{"testing_criteria": "fast", "passed": 3, "failed": 0, "errored": 0},
                                                       {"testing_criteria": "to_billing", "passed": 1, "failed": 2, "errored": 0}]
    rows = lab.sql("SELECT i.item_index, i.thread_id, i.turn_id, i.input_tokens, t.user_id FROM eval_items i JOIN threads t USING (thread_id) "
                   "WHERE run_id = ? ORDER BY item_index", [summary["id"]])
    assert list(rows.item_index) == [0, 1, 2] and set(rows.user_id) == {"local"} and rows.turn_id.notna().all() and (rows.input_tokens > 0).all()
    nodes = lab.nodes_df(rows.thread_id[0])  # the chat can open any item's conversation
    assert "billing_agent" in list(nodes.node_id)


def test_an_overrides_target_changes_only_what_it_names_and_recorded_threads_grade_without_a_model(make_lab, db_path):
    lab = make_lab(warm=False)
    summary = lab.evaluate_sync([{"input": "hello", "expected": "Be brief."}], target={"instructions": "Be brief."}, graders=[HAS], progress=False).summary
    assert summary["result_counts"]["passed"] == 1  # the mirror model repeats the instructions it got
    lab.send_sync("first", new_thread=True)
    lab.close()

    class Exploding(Scripted):
        async def get_response(self, *args, **kwargs):
            raise AssertionError("the model was called")

        def stream_response(self, *args, **kwargs):
            raise AssertionError("the model was called")

    reopened = make_lab(model=Exploding("x"), warm=False)
    recorded = from_threads(reopened.turns_df())
    graded = reopened.evaluate_sync(recorded, target="recorded", graders=[{**HAS, "reference": "first"}], progress=False).summary
    assert graded["result_counts"] == {"total": 2, "passed": 1, "failed": 1, "errored": 0}
    again = reopened.rescore_sync(summary["id"], [HAS, {"type": "latency", "name": "fast", "max": 0.001}], progress=False).summary
    assert again["result_counts"] == {"total": 1, "passed": 0, "failed": 1, "errored": 0}
    assert [c["passed"] for c in again["per_testing_criteria_results"]] == [0, 1]  # fast failed, has passed: nothing ran again
    assert reopened.sql("SELECT parent_run_id, kind FROM eval_runs WHERE run_id = ?", [again["id"]]).values.tolist() == [[summary["id"], "rescore"]]


def test_an_interrupted_run_keeps_its_finished_items_and_resumes(make_lab):
    lab = make_lab(warm=False)
    items = [{"input": "hello", "expected": "hello"}] + [{"input": f"/words {10 + n} slow", "expected": "1"} for n in range(3)]

    def interrupt_after_the_first() -> None:
        while lab.sql("SELECT count(*) FROM eval_items").iloc[0, 0] < 1:  # the first batch written; the next item streaming
            time.sleep(0.05)
        _thread.interrupt_main()  # Ctrl-C, as a kernel interrupt raises it

    threading.Thread(target=interrupt_after_the_first, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        lab.evaluate_sync(items, graders=[HAS], concurrency=1, progress=False)
    (run_id, status), = lab.sql("SELECT run_id, status FROM eval_runs").values.tolist()
    kept = lab.sql("SELECT count(*) FROM eval_items").iloc[0, 0]
    assert status == "interrupted" and 1 <= kept <= 3
    orphans = lab.sql("SELECT count(*) FROM eval_items i WHERE NOT EXISTS (SELECT 1 FROM threads t WHERE t.thread_id = i.thread_id)").iloc[0, 0]
    assert orphans == 0  # an item's thread is written before the item
    summary = lab.resume_eval_sync(run_id, progress=False).summary
    assert summary["status"] == "completed" and summary["result_counts"] == {"total": 4, "passed": 4, "failed": 0, "errored": 0}
    assert lab.sql("SELECT count(DISTINCT thread_id) FROM eval_items WHERE run_id = ?", [run_id]).iloc[0, 0] == 4


def test_bad_runs_are_one_sentence(make_lab):
    lab = make_lab(warm=False)
    with pytest.raises(ChatLabError, match="Two graders share a name"):
        lab.evaluate_sync([{"input": "x", "expected": "x"}], graders=[HAS, HAS], progress=False)
    # Each item would have errored, after the target had answered them all.
    with pytest.raises(ChatLabError, match=re.escape("Grader 'has' reads item.expected, which no item of the dataset has (its fields: answer, input).")):
        lab.evaluate_sync([{"input": "x", "answer": "x"}], graders=[HAS], progress=False)
    with pytest.raises(ChatLabError, match=re.escape("Grader 'has': {{ output_text }} reads the namespace 'output_text'; the namespaces are item and sample.")):
        lab.evaluate_sync([{"input": "x"}], graders=[{**HAS, "input": "{{ output_text }}"}], progress=False)
    with pytest.raises(ChatLabError, match="There is no eval run 'evalrun_nope'"):
        lab.resume_eval_sync("evalrun_nope")
    with pytest.raises(ChatLabError, match="graders= is empty: give at least one grader"):  # reported "0/0 passed"
        lab.evaluate_sync([{"input": "x"}], graders=[], progress=False)
    with pytest.raises(ChatLabError, match=re.escape("prices['mirror'] is 5; give two numbers")):  # a TypeError after every item ran
        lab.evaluate_sync([{"input": "x", "expected": "x"}], graders=[HAS], prices={"mirror": 5}, progress=False)
    with pytest.raises(ChatLabError, match='each item needs a "thread_id"'):
        lab.evaluate_sync([{"input": "x", "expected": "x"}], target="recorded", graders=[HAS], progress=False)
    assert lab.sql("SELECT count(*) FROM eval_runs").iloc[0, 0] == 0  # refused before anything was stored
    with pytest.raises(ChatLabError, match='Item 1\'s "conversation" is a list of'):
        lab.evaluate_sync([{"input": "x", "expected": "x"}, {"input": "x", "conversation": [{"role": "system", "content": "hi"}]}], graders=[HAS], progress=False)
    lab.login("bob")
    theirs = lab.send_sync("mine", new_thread=True).thread_id
    lab.login("alice")
    summary = lab.evaluate_sync([{"input": "mine", "expected": "x", "thread_id": theirs}], target="recorded", graders=[HAS], progress=False).summary
    assert summary["result_counts"] == {"total": 1, "passed": 0, "failed": 0, "errored": 1}  # another user's thread: an errored item
    with pytest.raises(ChatLabError, match="takes instructions, model, tools, context, not temperature"):
        lab.evaluate_sync([{"input": "x", "expected": "x"}], target={"temperature": 0.2}, graders=[HAS], progress=False)


def test_a_multi_turn_item_starts_from_its_conversation_and_the_sample_reads_node_outputs(make_lab):
    lab = make_lab(warm=False)
    item = {"input": "and my name?", "conversation": [{"role": "user", "content": "I am Ada"}, {"role": "assistant", "content": "Hello Ada"}],
            "expected": "history: 2 earlier items (assistant 1, user 1)"}
    run = lab.evaluate_sync([item], graders=[HAS], progress=False)
    assert run.summary["result_counts"]["passed"] == 1, run.items.output_text[0]
    texts = lab.items_df(run.items.thread_id[0]).sort_values("created_at")
    assert len(texts) == 4  # the two seeded messages, the input and the reply: no model call for the history
    exact = {"type": "string_check", "name": "type", "input": "{{ sample.nodes.classify.output_parsed.classification }}", "reference": "{{ item.expected_type }}",
             "operation": "eq"}  # the seed's "exact match on a field", read from the classifier node's output
    routed = lab.evaluate_sync(SUPPORT, target=templates.customer_support(), graders=[exact], progress=False)
    assert list(routed.df().type) == [1.0, 1.0, 0.0]  # the third item expects billing; the classifier said general


def test_a_run_is_a_frame_and_a_report_and_two_runs_compare_item_by_item(make_lab, tmp_path):
    lab = make_lab(warm=False)
    items = [{"input": f"question {n}", "expected": "Be brief." if n % 2 else "helpful"} for n in range(6)]
    fast = {"type": "latency", "name": "fast", "max": 5000}
    a = lab.evaluate_sync(items, graders=[HAS, fast], name="default prompt", progress=False, prices={"mirror": (1.0, 2.0)})
    b = lab.evaluate_sync(items, target={"instructions": "Be brief."}, graders=[HAS, fast], name="brief prompt", progress=False)
    frame = a.df()
    assert list(frame.item_index) == list(range(6)) and list(frame.passed) == [True, False] * 3 and list(frame.has) == [1.0, 0.0] * 3
    assert frame.cost_usd.gt(0).all() and frame.cost_usd.sum() == pytest.approx(
        float(((frame.input_tokens * 1.0 + frame.output_tokens * 2.0) / 1e6).sum()))
    assert a.per_grader().set_index("grader").pass_rate.to_dict() == {"fast": 1.0, "has": 0.5}
    assert list(a.worst(2).item_index) == [1, 3]
    usage, = a.summary["per_model_usage"]  # OpenAI's shape; the cost is chatkit-lab's
    assert usage["model_name"] == "mirror" and usage["invocation_count"] == 6 and usage["total_tokens"] == int(frame.input_tokens.sum() + frame.output_tokens.sum())
    assert a.summary["cost_usd"] == pytest.approx(frame.cost_usd.sum()) and b.summary["cost_usd"] is None  # b had no price for the mirror
    passing = a.as_dataset(passed=True)
    assert [item["input"] for item in passing.items] == ["question 0", "question 2", "question 4"] and passing.items[0]["expected"] == "helpful"
    assert to_finetuning(passing, tmp_path / "train.jsonl", reply="output") == {"written": 3, "skipped": 0, "reply": "output"}
    failing = lab.evaluate_sync(items[1:2], graders=[HAS], progress=False)
    with pytest.raises(ChatLabError, match=f"No item of {failing.id} passed \\(of 1\\), so there is no dataset"):
        failing.as_dataset(passed=True)
    report = a._repr_html_()
    assert "default prompt" in report and "Worst items" in report and "has" in report and "50%" in report and "$" in report
    assert "<script" not in lab.evaluate_sync([{"input": "<script>alert(1)</script>", "expected": "x"}], graders=[HAS], progress=False)._repr_html_()
    comparison = lab.compare_runs(a, b.id)
    assert comparison.counts() == {"regression": 3, "fix": 3, "still passing": 0, "still failing": 0}  # the mirror repeats its instructions
    assert list(comparison.fixes.item_index_a) == [1, 3, 5] and (comparison.fixes.delta > 0).all()
    assert list(comparison.regressions.item_index_a) == [0, 2, 4] and (comparison.regressions.delta < 0).all()
    assert comparison.per_grader.set_index("grader").delta.to_dict() == {"fast": 0.0, "has": 0.0}
    assert len(comparison.plot().axes) == 2 and "3 fixed, 3 regressed" in comparison._repr_html_()
    runs = lab.eval_runs_df()
    assert list(runs.name[:2]) == ["default prompt", "brief prompt"] and list(runs.passed[:2]) == [3, 3]
    with pytest.raises(ChatLabError, match="no item in common"):
        lab.compare_runs(a, lab.evaluate_sync([{"input": "other"}], graders=[fast], progress=False))


def test_graders_may_be_one_grader_openais_eval_config_or_a_file(make_lab, tmp_path):
    """graders="graders.json" or one grader object failed with 'A grader is a JSON object ..., not str'."""
    lab = make_lab(warm=False)
    path = tmp_path / "graders.json"
    path.write_text(json.dumps({"testing_criteria": [HAS]}))
    item = [{"input": "hello", "expected": "you said"}]
    for given in (path, str(path), HAS, {"testing_criteria": [HAS]}):
        assert lab.evaluate_sync(item, graders=given, progress=False).summary["per_testing_criteria_results"][0]["passed"] == 1
    with pytest.raises(ChatLabError, match="There is no graders file 'missing.json'"):
        lab.evaluate_sync(item, graders="missing.json", progress=False)


def test_async_evaluate_runs_from_a_cell_that_awaits(make_lab):
    import asyncio

    lab = make_lab(warm=False)
    run = asyncio.run(lab.evaluate([{"input": "hello", "expected": "hello"}], graders=[HAS], progress=False))
    assert run.summary["result_counts"]["passed"] == 1 and lab.eval_run(run.id).summary == run.summary


def test_an_optimisation_round_is_kept_only_when_the_graders_improve(make_lab):
    lab = make_lab(warm=False)
    items = [{"input": f"question {n}", "expected": "Be brief."} for n in range(3)]
    base = lab.evaluate_sync(items, graders=[HAS], progress=False)
    assert base.pass_rate == 0.0
    worse = lab.optimize_sync(base.id, judge=Scripted('{"instructions": "Ramble."}'), progress=False)
    assert worse.best.id == base.id and worse.rounds.kept.tolist() == [False] and worse.instructions.startswith("You are a helpful")
    judge = Scripted('{"instructions": "Be brief."}')
    better = lab.optimize_sync(base.id, judge=judge, rounds=2, progress=False)
    assert better.rounds.kept.tolist() == [True] and better.best.pass_rate == 1.0 and better.instructions == "Be brief."  # round 2: nothing left to fix
    asked = judge.inputs[0]["input"][-1]["content"]
    assert "question 0" in asked and "Failed: has" in asked and "You are a helpful" in asked
    stored = lab.sql("SELECT round, base_run_id, kept, instructions_after, pass_rate_after FROM eval_rounds WHERE optimization_id = ?", [better.id])
    assert stored.values.tolist() == [[1, base.id, True, "Be brief.", 1.0]]
    assert lab.sql("SELECT kind, parent_run_id FROM eval_runs WHERE run_id = ?", [better.best.id]).values.tolist() == [["optimization", base.id]]
    flow = lab.evaluate_sync(SUPPORT[:1], target=templates.customer_support(), graders=[{**HAS, "reference": "Refunds within 30 days"}], progress=False)
    with pytest.raises(ChatLabError, match="node= one of classify, billing_agent"):
        lab.optimize_sync(flow.id, judge=judge, progress=False)
    revised = lab.optimize_sync(flow.id, node="billing_agent", judge=Scripted('{"instructions": "Refunds within 30 days."}'), progress=False)
    assert revised.rounds.kept.tolist() == [True] and "Refunds within 30 days" in revised.best.items.output_text[0]
    with pytest.raises(ChatLabError, match="proposed no instructions"):
        lab.optimize_sync(base.id, judge=Scripted('{"instructions": "  "}'), progress=False)
    assert lab.sql("SELECT count(*) FROM eval_rounds").iloc[0, 0] == 3  # the empty proposal stored nothing


def test_the_eval_command_prints_the_summary_and_fails_below_the_pass_rate(make_lab, db_path, tmp_path):
    import json
    import subprocess
    import sys

    from chatkit_lab.cli import main

    lab = make_lab(warm=False)
    assert lab.publish(templates.customer_support()) == 1
    lab.close()
    dataset = tmp_path / "support.jsonl"
    dataset.write_text("\n".join(json.dumps(item) for item in SUPPORT))
    graders = tmp_path / "graders.json"
    graders.write_text(json.dumps({"testing_criteria": [
        {"type": "string_check", "name": "type", "input": "{{ sample.nodes.classify.output_parsed.classification }}",
         "reference": "{{ item.expected_type }}", "operation": "eq"}, {"type": "latency", "name": "fast", "max": 5000}]}))
    command = [sys.executable, "-m", "chatkit_lab.cli", "eval", str(dataset), "--db", str(db_path), "--workflow", "customer-support@1",
               "--graders", str(graders), "--min-pass-rate", "0.9"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "support × customer-support@1" in done.stdout and "2/3 passed (66.7%)" in done.stdout and "type: 2 passed, 1 failed" in done.stdout
    assert "below --min-pass-rate 90.0%" in done.stderr
    assert main(["eval", str(dataset), "--db", str(db_path), "--workflow", "customer-support@1", "--graders", str(graders), "--min-pass-rate", "0.6"]) == 0
    graders.write_text('[{"type": "string_check", "name": "x"}]')
    assert main(["eval", str(dataset), "--db", str(db_path), "--graders", str(graders)]) == 1  # a bad grader: one sentence, no run
    graders.write_text(json.dumps([{"type": "string_check", "name": "typo", "input": "{{ sample.output_txt }}", "reference": "x", "operation": "eq"}]))
    nothing = subprocess.run(command[:-2], capture_output=True, text=True, timeout=120)  # every result errored: it exited 0, saying only "3 errored"
    assert nothing.returncode == 1 and "every item errored, so the run measured nothing" in nothing.stderr
    assert "  3 × {{ sample.output_txt }}: sample.output_txt is not in the data." in nothing.stdout
    percent = subprocess.run([*command[:-1], "90"], capture_output=True, text=True, timeout=120)  # 90 meant 90%: it passed every run
    assert percent.returncode == 2 and "--min-pass-rate: 90 is not between 0 and 1 (write 0.9 for 90%)" in percent.stderr
    reopened = make_lab(warm=False)
    assert list(reopened.eval_runs_df().status) == ["completed"] * 3


def test_the_lab_target_runs_with_the_labs_guardrails_and_no_masked_pii_reaches_the_file(make_lab, db_path):
    from .conftest import found_in_database

    email = "ada.lovelace@example.com"
    pii = {"version": 1, "input": {"version": 1, "guardrails": [{"name": "Contains PII", "config": {"entities": ["EMAIL_ADDRESS"]}}]}}
    lab = make_lab(warm=False, guardrails=pii)
    run = lab.evaluate_sync([{"input": f"write to {email}", "expected": "<EMAIL_ADDRESS>"}], graders=[HAS], progress=False)
    assert run.summary["result_counts"]["passed"] == 1  # the model saw the masked message, as in the chat
    assert lab.guardrails_df(run.items.thread_id[0]).check_name.tolist() == ["Contains PII"]
    lab.close()
    assert found_in_database(db_path, email) == []  # not in the dataset's rows, the thread, the answer or the trace


def test_the_store_writes_a_batch_of_threads_that_read_back_as_chatkit_wrote_them(make_lab):
    import asyncio

    from chatkit_lab.context import RequestContext
    from chatkit_lab.evals.runs import seeded_thread
    from chatkit_lab.store.memory import MemoryStore

    lab = make_lab(warm=False)
    staged = MemoryStore()
    ids = [asyncio.run(seeded_thread(staged, user, [("user", f"hi from {user}"), ("assistant", "hello")])) for user in ("ann", "bob")]
    lab.runtime.call(lab.store.add_threads([staged.take_thread(t) for t in ids]))
    assert staged.thread_ids() == []
    page = lab.runtime.call(lab.store.load_thread_items(ids[0], None, 10, "asc", RequestContext(user_id="ann")))
    assert [i.type for i in page.data] == ["user_message", "assistant_message"] and page.data[0].content[0].text == "hi from ann"
    assert lab.runtime.call(lab.store.load_thread_items(ids[0], None, 10, "asc", RequestContext(user_id="bob"))).data == []  # ann's only
    assert lab.threads_df(all_users=True).set_index("thread_id").loc[ids, "user_id"].tolist() == ["ann", "bob"]


def test_an_overrides_target_takes_tools_and_context_as_replay_does(make_lab):
    from agents import function_tool

    @function_tool
    def lookup_order(order_id: str) -> str:
        """The order's status."""
        return "shipped"

    lab = make_lab(warm=False)
    lab.context.update(team="support")
    tools = {**HAS, "name": "tools", "reference": "tools: lookup_order"}
    context = {**HAS, "name": "context", "reference": "in the instructions (team, project)"}  # the lab's value and the override
    run = lab.evaluate_sync([{"input": "hello", "expected": ""}], target={"tools": [lookup_order], "context": {"project": "Churn"}},
                            graders=[tools, context], progress=False)
    assert run.summary["result_counts"]["passed"] == 1, run.items.output_text[0]
    assert run.target["overrides"] == {"tools": ["lookup_order"], "context": {"project": "Churn"}}
    with pytest.raises(ChatLabError, match="tools are not stored"):
        lab.resume_eval_sync(run.id, progress=False)


def test_eval_runs_travel_in_a_jsonl_export_each_with_only_its_users_rows(make_lab, tmp_path):
    from chatkit_lab import ChatLab

    lab = make_lab(warm=False)
    mine = lab.evaluate_sync([{"input": "hello", "expected": "hello"}], graders=[HAS], progress=False)
    lab.login("bob")
    theirs = lab.evaluate_sync([{"input": "other", "expected": "x"}], graders=[HAS], progress=False)
    counts = lab.export(tmp_path / "bob.jsonl")  # as bob: his runs, items, results and datasets only
    assert (counts["eval_runs"], counts["eval_items"], counts["eval_results"], counts["eval_datasets"]) == (1, 1, 1, 1)
    with ChatLab(tmp_path / "copy.duckdb", warm=False, user_id="bob") as copy:
        copy.import_jsonl(tmp_path / "bob.jsonl")
        assert copy.eval_run(theirs.id).summary == theirs.summary
        with pytest.raises(ChatLabError, match="There is no eval run"):
            copy.eval_run(mine.id)


def test_a_run_whose_write_fails_stops_every_worker_loses_no_answer_and_resumes(make_lab, monkeypatch):
    lab = make_lab(warm=False)
    items = [{"input": "hello", "expected": "hello"}] + [{"input": f"/words {200 + n} slow", "expected": "1"} for n in range(3)]
    calls = fail_once(monkeypatch, lab.runtime.store, "add_threads")
    monkeypatch.setattr("chatkit_lab.evals.runs.BATCH", 1)  # the first answer is written at once
    with pytest.raises(ChatLabError, match="disk is full"):
        lab.evaluate_sync(items, graders=[HAS], concurrency=2, progress=False)
    (run_id, status), = lab.sql("SELECT run_id, status FROM eval_runs").values.tolist()
    kept = lab.sql("SELECT item_index, thread_id FROM eval_items WHERE run_id = ?", [run_id])
    assert status == "interrupted" and 0 in kept.item_index.tolist()  # the answer whose write failed was written as the run stopped
    assert len(calls) == 2  # the write that failed, then the one as the run stopped
    time.sleep(0.3)
    assert lab.sql("SELECT count(*) FROM eval_items").iloc[0, 0] == len(kept)  # no worker went on answering
    orphans = lab.sql("SELECT count(*) FROM eval_items i WHERE NOT EXISTS (SELECT 1 FROM threads t WHERE t.thread_id = i.thread_id)").iloc[0, 0]
    assert orphans == 0
    summary = lab.resume_eval_sync(run_id, progress=False).summary
    assert summary["status"] == "completed" and summary["result_counts"]["total"] == 4
    assert lab.sql("SELECT count(DISTINCT thread_id) FROM eval_items WHERE run_id = ?", [run_id]).iloc[0, 0] == 4


def test_a_run_whose_rows_fail_after_its_threads_were_written_writes_them_once_and_resumes(make_lab, lab_db, monkeypatch):
    # On PostgreSQL the store's transaction (the threads) commits before the run's rows are
    # written: the retry meets threads that are there already, and must neither fail nor copy them.
    from chatkit_lab.evals import runs

    lab = make_lab(db=lab_db, warm=False)
    original, calls = runs.insert_frame, []

    def failing(cur, table, frame):
        if table == "eval_items":
            calls.append(frame)
            if len(calls) == 1:
                raise ChatLabError("The disk is full.")
        return original(cur, table, frame)

    monkeypatch.setattr(runs, "insert_frame", failing)
    monkeypatch.setattr(runs, "BATCH", 1)
    items = [{"input": "hello", "expected": "hello"}] + [{"input": f"/words {200 + n} slow", "expected": "1"} for n in range(2)]
    with pytest.raises(ChatLabError, match="disk is full"):
        lab.evaluate_sync(items, graders=[HAS], concurrency=2, progress=False)
    (run_id,), = lab.sql("SELECT run_id FROM eval_runs").values.tolist()
    assert 0 in lab.sql("SELECT item_index FROM eval_items WHERE run_id = ?", [run_id]).item_index.tolist() and len(calls) == 2
    summary = lab.resume_eval_sync(run_id, progress=False).summary
    assert summary["status"] == "completed" and summary["result_counts"]["total"] == 3
    threads = lab.sql("SELECT thread_id FROM eval_items WHERE run_id = ?", [run_id]).thread_id.tolist()
    copies = lab.sql("SELECT thread_id, count(*) AS n FROM items WHERE thread_id IN (SELECT unnest(?::VARCHAR[])) GROUP BY thread_id", [threads])
    assert len(set(threads)) == 3 and len(copies) == 3 and copies.n.tolist() == [2, 2, 2]  # each thread once, its message and reply once


def test_an_items_approval_answers_the_cards_its_run_stops_at(make_lab):
    """A run stopping at an approval ended its item with an empty answer and no error; now the item's
    "approval" clicks, for a workflow's approval node and for a tool that needs approval."""
    from agents import function_tool

    deleted = []

    @function_tool(needs_approval=True)
    def delete_file(path: str) -> str:
        """Delete a file."""
        deleted.append(path)
        return f"deleted {path}"

    lab = make_lab(warm=False, tools=[delete_file])
    returns = [{"input": "I want to return_item my shoes", "expected": "approved", "approval": "approve"},
               {"input": "I want to return_item my hat", "expected": "not approved", "approval": ["reject"]},
               {"input": "I want to return_item my scarf", "expected": "approved"}]
    approved = {"type": "trajectory:branch", "name": "approved", "value": {"node": "approve_return", "edge": "approve"}}
    run = lab.evaluate_sync(returns, target=templates.customer_service(), graders=[HAS, approved], progress=False)
    items = run.items.sort_values("item_index")
    assert items.output_text.tolist()[:2] == ["Your return is approved; a label is on its way.", "The return was not approved. Anything else I can do?"]
    assert items.error.tolist()[2].startswith("The run stopped at an approval (Approve the return), which an eval cannot click")
    assert run.summary["result_counts"] == {"total": 3, "passed": 1, "failed": 1, "errored": 1}
    assert list(run.df().approved) == [1.0, 0.0, 0.0]  # the approval node's edge is in the click's turn
    decided = [e for e in lab.items_df(items.thread_id.iloc[0]).data if '"approval_decision"' in e]
    assert len(decided) == 1 and "Approved by local" in decided[0]  # the item's thread shows the card answered


    calls = [{"input": f'call delete_file {{"path": "{name}"}}', "expected": expected, "approval": decision}
             for name, expected, decision in (("a.txt", "deleted a.txt", "approve"), ("b.txt", "not approved", "reject"))]
    # the click's turn is part of the item's answer: its tool call, its tokens
    ran = {"type": "trajectory:tool-args-match", "name": "ran", "value": {"name": "delete_file", "args": {"path": "a.txt"}}}
    tools = lab.evaluate_sync(calls, graders=[HAS, ran], progress=False)
    assert tools.summary["per_testing_criteria_results"] == [{"testing_criteria": "has", "passed": 2, "failed": 0, "errored": 0},
                                                            {"testing_criteria": "ran", "passed": 1, "failed": 1, "errored": 0}]
    assert deleted == ["a.txt"]
    with pytest.raises(ChatLabError, match="""Item 0's "approval" is "approve", "reject" or a list of them, not 'yes'"""):
        lab.evaluate_sync([{"input": "x", "expected": "x", "approval": "yes"}], graders=[HAS], progress=False)


def test_a_recorded_thread_with_an_approval_makes_an_item_and_inspects_its_model_call(make_lab):
    """The click's turn has no user message: from_threads took it as the last exchange ("Item 0 has no
    input text"), and lab.inspect(thread) picked it and said the turn had failed before the model."""
    lab = make_lab(warm=False, workflow=templates.customer_service())
    thread = lab.send_sync("I want to return_item my shoes").thread_id
    lab.decide_sync(thread, "approve")  # a turn of its own, no user message, no model call
    items = from_threads(lab.turns_df()).items
    assert [(i["input"], i["recorded_reply"]) for i in items] == [("I want to return_item my shoes", "Your return is approved; a label is on its way.")]
    assert lab.inspect(thread).instructions.startswith("Classify the request")
    clicked = lab.turns_df().turn_id.iloc[-1]
    with pytest.raises(ChatLabError, match=f"Turn {clicked} made no model call: it failed before reaching the model, or nothing on its path"):
        lab.inspect(clicked)
