"""Eval runs: a dataset through the lab, a workflow or overrides, stored, resumed and graded again."""

import _thread
import threading
import time

import pytest

from chatkit_lab.errors import ChatLabError
from chatkit_lab.evals import from_threads
from chatkit_lab.workflows import templates

from .test_guardrails import Scripted

HAS = {"type": "string_check", "name": "has", "input": "{{ sample.output_text }}", "reference": "{{ item.expected }}", "operation": "like"}
SUPPORT = [{"input": "billing: I was charged twice", "expected_type": "billing"}, {"input": "technical: the app crashes", "expected_type": "technical"},
           {"input": "general: when do you open?", "expected_type": "billing"}]


def test_a_workflow_run_is_stored_linked_to_its_threads_and_summarised_as_openai_does(make_lab):
    lab = make_lab(warm=False)
    routed = [{"type": "trajectory:branch", "name": f"to_{kind}", "value": {"node": "route", "edge": kind}} for kind in ("billing",)]
    summary = lab.evaluate_sync(SUPPORT, target=templates.customer_support(), graders=[*routed, {"type": "latency", "name": "fast", "max": 5000}],
                                progress=False)
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
    summary = lab.evaluate_sync([{"input": "hello", "expected": "Be brief."}], target={"instructions": "Be brief."}, graders=[HAS], progress=False)
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
    graded = reopened.evaluate_sync(recorded, target="recorded", graders=[{**HAS, "reference": "first"}], progress=False)
    assert graded["result_counts"] == {"total": 2, "passed": 1, "failed": 1, "errored": 0}
    again = reopened.rescore_sync(summary["id"], [HAS, {"type": "latency", "name": "fast", "max": 0.001}], progress=False)
    assert again["result_counts"] == {"total": 1, "passed": 0, "failed": 1, "errored": 0}
    assert [c["passed"] for c in again["per_testing_criteria_results"]] == [0, 1]  # fast failed, has passed: nothing ran again
    assert reopened.sql("SELECT parent_run_id, kind FROM eval_runs WHERE run_id = ?", [again["id"]]).values.tolist() == [[summary["id"], "rescore"]]


def test_an_interrupted_run_keeps_its_finished_items_and_resumes(make_lab):
    lab = make_lab(warm=False)
    items = [{"input": "hello", "expected": "hello"}] + [{"input": f"/words {10 + n} slow", "expected": "1"} for n in range(3)]

    def interrupt_after_the_first() -> None:
        while lab.sql("SELECT count(*) FROM eval_items").iloc[0, 0] < 1:
            time.sleep(0.05)
        _thread.interrupt_main()  # Ctrl-C, as a kernel interrupt raises it

    threading.Thread(target=interrupt_after_the_first, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        lab.evaluate_sync(items, graders=[HAS], concurrency=1, progress=False)
    (run_id, status), = lab.sql("SELECT run_id, status FROM eval_runs").values.tolist()
    assert status == "interrupted" and lab.sql("SELECT count(*) FROM eval_items").iloc[0, 0] == 1
    summary = lab.resume_eval_sync(run_id, progress=False)
    assert summary["status"] == "completed" and summary["result_counts"] == {"total": 4, "passed": 4, "failed": 0, "errored": 0}
    assert lab.sql("SELECT count(DISTINCT thread_id) FROM eval_items WHERE run_id = ?", [run_id]).iloc[0, 0] == 4


def test_bad_runs_are_one_sentence(make_lab):
    lab = make_lab(warm=False)
    with pytest.raises(ChatLabError, match="Two graders share a name"):
        lab.evaluate_sync([{"input": "x"}], graders=[HAS, HAS], progress=False)
    with pytest.raises(ChatLabError, match="There is no eval run 'evalrun_nope'"):
        lab.resume_eval_sync("evalrun_nope")
    with pytest.raises(ChatLabError, match='each item needs a "thread_id"'):
        lab.evaluate_sync([{"input": "x"}], target="recorded", graders=[HAS], progress=False)
    assert lab.sql("SELECT count(*) FROM eval_runs").iloc[0, 0] == 0  # refused before anything was stored
    with pytest.raises(ChatLabError, match='with a "conversation" are not run live yet'):
        lab.evaluate_sync([{"input": "x", "conversation": [{"role": "user", "content": "hi"}]}], graders=[HAS], progress=False)
    lab.login("bob")
    theirs = lab.send_sync("mine", new_thread=True).thread_id
    lab.login("alice")
    summary = lab.evaluate_sync([{"input": "mine", "thread_id": theirs}], target="recorded", graders=[HAS], progress=False)
    assert summary["result_counts"] == {"total": 1, "passed": 0, "failed": 0, "errored": 1}  # another user's thread: an errored item
    with pytest.raises(ChatLabError, match="takes instructions and model"):
        lab.evaluate_sync([{"input": "x"}], target={"tools": []}, graders=[HAS], progress=False)
