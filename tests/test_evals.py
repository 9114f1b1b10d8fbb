"""Graders: OpenAI's grader JSON graded locally, with the edge cases pinned."""

import asyncio
import json
import re

import pytest

from chatkit_lab.errors import ChatLabError
from chatkit_lab.evals import GraderError, cost_of, grade, load_grader, render
from chatkit_lab.evals.sandbox import run_grader
from chatkit_lab.evals.templating import TemplateError

from .test_guardrails import Scripted

SAMPLE = {"output_text": "The refund was issued.", "output_tools": [{"function": {"name": "refund", "arguments": '{"order": 42}'}}],
          "latency_ms": 1200.0, "input_tokens": 1000, "output_tokens": 500, "model": "gpt-4.1-mini"}
ITEM = {"expected": "refund", "answer": "The refund was issued.", "tags": ["billing", "urgent"]}


def check(operation, input="{{ sample.output_text }}", reference="{{item.expected}}", sample=SAMPLE, item=ITEM):
    return grade({"type": "string_check", "name": "s", "input": input, "reference": reference, "operation": operation}, sample, item)


def test_templates_follow_openais_rules():
    values = {"sample": SAMPLE, "item": ITEM}
    assert render("{{sample.output_tools[0].function.name}} / {{ item.tags[1] }}", values) == "refund / urgent"
    assert render("{{item.tags}}", values) == '["billing", "urgent"]'  # a non-string value as JSON
    with pytest.raises(TemplateError, match="the namespaces are item and sample"):
        render("{{ output.text }}", values)
    with pytest.raises(TemplateError, match=r"item\.tags\[5\] is not in the data"):
        render("{{ item.tags[5] }}", values)


def test_string_check_operations():
    assert check("eq", reference="{{ item.answer }}").passed and not check("eq").passed
    assert check("ne").score == 1.0 and check("ne", reference="{{item.answer}}").score == 0.0
    assert check("like").passed and not check("like", reference="Refund").passed  # contains, case-sensitive
    assert check("ilike", reference="REFUND").passed
    errored = check("eq", input="{{ sample.missing }}")
    assert errored.score == 0.0 and not errored.passed and "sample.missing is not in the data" in errored.error


def _direct(metric, text, reference):
    """The library call each metric is documented to be."""
    if metric == "fuzzy_match":
        from rapidfuzz import fuzz, utils

        return fuzz.WRatio(text, reference, processor=utils.default_process) / 100
    if metric == "bleu":
        import sacrebleu

        return sacrebleu.sentence_bleu(text, [reference]).score / 100
    if metric == "gleu":
        from nltk.translate.gleu_score import sentence_gleu

        return sentence_gleu([reference.split()], text.split())
    if metric == "meteor":
        from nltk.translate.meteor_score import meteor_score

        from chatkit_lab.evals.graders import _NoSynonyms

        return meteor_score([reference.lower().split()], text.lower().split(), wordnet=_NoSynonyms())
    from rouge_score import rouge_scorer

    kind = "rougeL" if metric == "rouge_l" else f"rouge{metric[-1]}"
    return rouge_scorer.RougeScorer([kind]).score(reference, text)[kind].fmeasure


@pytest.mark.parametrize("metric", ["fuzzy_match", "bleu", "gleu", "meteor", "rouge_1", "rouge_2", "rouge_5", "rouge_l"])
def test_text_similarity_metrics_are_the_libraries_functions(metric):
    reference = "The refund has been issued to your card today."
    config = {"type": "text_similarity", "name": "t", "input": "{{sample.output_text}}", "reference": reference,
              "evaluation_metric": metric, "pass_threshold": 0.2}
    result = grade(config, SAMPLE, ITEM)
    assert result.score == pytest.approx(_direct(metric, SAMPLE["output_text"], reference)) and result.error is None
    assert 0 < result.score < 1 if metric != "rouge_5" else result.score == 0.0
    long = "the refund for your order was issued to the card you paid with today"
    same = grade({**config, "reference": long}, {**SAMPLE, "output_text": long}, ITEM)
    assert same.score == pytest.approx(1.0, abs=0.01) and same.passed  # identical texts (METEOR's fragmentation penalty leaves < 1%)
    assert not grade({**config, "pass_threshold": 1.01}, SAMPLE, ITEM).passed


def test_pass_threshold_is_inclusive():
    config = {"type": "text_similarity", "name": "t", "input": "abc", "reference": "abc", "evaluation_metric": "fuzzy_match", "pass_threshold": 1.0}
    assert grade(config, SAMPLE, ITEM).passed  # score 1.0 >= 1.0


def test_cosine_uses_the_embedder_it_is_given():
    async def embed(texts):
        return [[1.0, 0.0] if "refund" in t else [0.0, 1.0] for t in texts]

    config = {"type": "text_similarity", "name": "c", "input": "{{sample.output_text}}", "reference": "a refund", "evaluation_metric": "cosine",
              "pass_threshold": 0.9}
    assert grade(config, SAMPLE, ITEM, embedder=embed).score == pytest.approx(1.0)
    assert "needs embeddings" in grade(config, SAMPLE, ITEM).error


SCORE = {"type": "score_model", "name": "helpful", "range": [1, 5], "pass_threshold": 4,
         "input": [{"role": "system", "content": "Rate helpfulness 1-5."}, {"role": "user", "content": "{{ sample.output_text }}"}]}


@pytest.mark.parametrize(("reply", "score", "passed", "error"), [
    ({"result": 4, "steps": []}, 4.0, True, None),
    ({"result": 9.5, "steps": []}, 5.0, True, None),   # clamped to the range
    ({"result": -2, "steps": []}, 1.0, False, None),
    ({"result": 3.99, "steps": []}, 3.99, False, None),
])
def test_score_model_clamps_to_its_range_and_passes_at_the_threshold(reply, score, passed, error):
    result = grade(SCORE, SAMPLE, ITEM, model=Scripted(json.dumps(reply)))
    assert (result.score, result.passed, result.error) == (pytest.approx(score), passed, error)


def test_a_judge_that_gives_no_number_scores_zero_with_the_reason():
    async def judge(messages, schema, model):
        return {"result": "excellent"}

    from chatkit_lab.evals import agrade

    result = asyncio.run(agrade(SCORE, SAMPLE, ITEM, judge=judge))
    assert result.score == 0.0 and not result.passed and 'the judge\'s result "excellent" is not a number' in result.error


def test_a_judge_that_fails_errors_the_item_with_a_sentence_and_the_run_goes_on(make_lab, monkeypatch):
    # Without a key, the judge's OpenAIError ended the whole run (left 'running') with a traceback.
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    no_key = grade(SCORE, SAMPLE, ITEM, model="gpt-4.1-mini")
    assert no_key.score == 0.0 and no_key.error.startswith("The judge model failed: No API key is set, so")

    async def broken(messages, schema, model):
        raise ConnectionResetError("judge went away")

    from chatkit_lab.evals import agrade

    assert asyncio.run(agrade(SCORE, SAMPLE, ITEM, judge=broken)).error == "ConnectionResetError: judge went away"
    lab = make_lab(warm=False)
    run = lab.evaluate_sync([{"input": "a"}, {"input": "b"}], graders=[SCORE], judge="gpt-4.1-mini", progress=False)
    assert run.summary["status"] == "completed" and run.summary["result_counts"]["errored"] == 2
    assert run.results.error.str.startswith("The judge model failed").all()


def test_the_judge_receives_the_rendered_messages():
    model = Scripted(json.dumps({"result": 5, "steps": []}))
    grade(SCORE, SAMPLE, ITEM, model=model)
    assert model.inputs[0]["instructions"] == "Rate helpfulness 1-5." and "The refund was issued." in json.dumps(model.inputs[0]["input"])


def test_label_model_passes_on_a_passing_label_and_refuses_a_bad_config():
    config = {"type": "label_model", "name": "tone", "labels": ["polite", "neutral", "rude"], "passing_labels": ["polite", "neutral"],
              "input": [{"role": "user", "content": "Tone of: {{sample.output_text}}"}]}
    assert grade(config, SAMPLE, ITEM, model=Scripted('{"label": "neutral"}')).passed
    assert not grade(config, SAMPLE, ITEM, model=Scripted('{"label": "rude"}')).passed
    with pytest.raises(GraderError, match=r"passing_labels \['kind'\] are not among labels"):
        load_grader({**config, "passing_labels": ["kind"]})


@pytest.mark.parametrize(("source", "score", "error"), [
    ("def grade(sample, item):\n    return 0.75", 0.75, None),
    ("def grade(sample, item):\n    return 1 if item['expected'] in sample['output_text'] else 0", 1.0, None),
    ("def grade(sample, item):\n    raise ValueError('boom')", 0.0, "ValueError: boom"),
    ("def grade(sample, item):\n    return 'high'", 0.0, "grade returned str, not a float"),
    ("def grade(sample, item):\n    return float('nan')", 0.0, "grade returned nan, not a finite number"),
    ("def grade(sample):\n    return 1.0", 0.0, "grade takes exactly two arguments"),
    ("import socket\ndef grade(sample, item):\n    socket.create_connection(('127.0.0.1', 9))\n    return 1.0", 0.0, "no network"),
    # urllib failed with "TypeError: function() argument 'code' must be code", a subprocess reached the network,
    # and a print() took the place of the result
    ("import urllib.request\ndef grade(sample, item):\n    urllib.request.urlopen('http://127.0.0.1:9/')", 0.0, "<urlopen error the python grader has no network>"),
    ("import subprocess, sys\ndef grade(sample, item):\n    subprocess.run([sys.executable, '-c', 'print(1)'])", 0.0,
     "PermissionError: the python grader cannot start processes"),
    ("def grade(sample, item):\n    print('checking', sample['output_text'])\n    return 0.25", 0.25, None),
    ("def grade(sample, item):\n    x = bytearray(3 * 1024 ** 3)", 0.0, "the python grader ran out of memory (its limit is 2 GB)"),
])
def test_the_python_grader_runs_apart_and_any_failure_is_an_errored_zero(source, score, error):
    result = grade({"type": "python", "name": "py", "source": source}, SAMPLE, ITEM)
    assert result.score == score
    assert (result.error is None) if error is None else (error in result.error)


def test_a_python_grader_that_cannot_run_is_refused_when_it_loads_before_any_item_is_sent():
    with pytest.raises(GraderError, match=re.escape("Grader 'py': source is not Python: expected ':' on line 1.")):
        load_grader({"type": "python", "name": "py", "source": "def grade(sample, item)\n    return 1.0"})
    with pytest.raises(GraderError, match=re.escape("Grader 'py': source defines no grade(sample, item) function.")):
        load_grader({"type": "python", "name": "py", "source": "def score(sample, item):\n    return 1.0"})
    assert grade({"type": "python", "name": "py", "source": "grade = lambda sample, item: 0.5"}, SAMPLE, ITEM).score == 0.5
    braces = {"type": "python", "name": "py", "source": 'def grade(sample, item):\n    return len(f"{{x}}") / 10'}  # code, not a template
    assert grade({"type": "multi", "name": "m", "calculate_output": "py", "graders": {"py": braces}}, SAMPLE, ITEM).score == 0.3


def test_a_python_grader_that_hangs_is_stopped():
    outcome = asyncio.run(run_grader("def grade(sample, item):\n    while True: pass", {}, {}, limit_s=1.0))
    assert outcome.score is None and "did not finish within 1 s" in outcome.error


def test_multi_combines_graders_with_a_safe_formula_and_refuses_nesting():
    config = {"type": "multi", "name": "combined", "calculate_output": "(exact + fast * 2) / 3 + 0 * 2 ^ 3",
              "graders": {"exact": {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}", "reference": "{{item.answer}}",
                                    "operation": "eq"},
                          "fast": {"type": "latency", "name": "fast", "max": 1000}}}
    result = grade(config, SAMPLE, ITEM)
    assert result.score == pytest.approx(1 / 3) and result.info == {"exact": 1.0, "fast": 0.0} and not result.passed
    assert grade({**config, "calculate_output": "max(exact, fast) ^ 2"}, SAMPLE, ITEM).score == 1.0
    with pytest.raises(GraderError, match="cannot hold another multi grader"):
        load_grader({**config, "graders": {"inner": {**config}}})
    for formula, message in [("__import__('os').system('x')", "may call only"), ("exact.real", "numbers, grader names"),
                             ("email + 1", "reads 'email'"), ("exact +", "is not a formula")]:
        with pytest.raises(GraderError, match=message):
            load_grader({**config, "calculate_output": formula})


def test_metric_graders_for_latency_tokens_and_cost():
    assert grade({"type": "latency", "name": "rt", "max": 5000}, SAMPLE, ITEM).passed  # the seed's "response time < 5000 ms"
    assert not grade({"type": "latency", "name": "rt", "max": 1200}, SAMPLE, ITEM).passed  # strictly below
    assert grade({"type": "tokens", "name": "tok", "max": 1600}, SAMPLE, ITEM).info == {"value": 1500.0, "max": 1600}
    assert cost_of(SAMPLE) == pytest.approx((1000 * 0.40 + 500 * 1.60) / 1e6)
    assert cost_of(SAMPLE, {"gpt-4.1-mini": (1.0, 1.0)}) == pytest.approx(1500 / 1e6)
    unknown = grade({"type": "cost", "name": "usd", "max": 0.01}, {**SAMPLE, "model": "local-llama"}, ITEM)
    assert unknown.error.startswith("there is no price for model 'local-llama'") and not unknown.passed


@pytest.mark.parametrize(("config", "message"), [
    ({"type": "string_check", "name": "s", "input": "x", "reference": "y", "operation": "contains"}, "operation"),
    ({"type": "text_similarity", "name": "t", "input": "x", "reference": "y", "evaluation_metric": "bertscore", "pass_threshold": 0.5},
     "evaluation_metric"),
    ({"type": "score_model", "name": "m", "input": [], "range": [5, 1]}, "must go from a low to a higher number"),
    ({"type": "string_check", "name": "s", "input": "x", "reference": "y", "operation": "eq", "extra": 1}, "extra"),
    ("string_check", "is a JSON object"),
])
def test_a_bad_grader_config_is_one_sentence(config, message):
    with pytest.raises(GraderError, match=message):
        load_grader(config)


# -- datasets ----------------------------------------------------------------------------------
SEED = [
    {"input": "My card was charged twice", "expected_type": "billing", "expected_response_contains": "refund"},
    {"input": "The app crashes on login", "expected_type": "technical", "expected_response_contains": "steps"},
]


def test_datasets_load_from_every_source_with_one_content_hash(tmp_path):
    import pandas as pd

    from chatkit_lab.evals import Dataset, load_dataset

    jsonl = tmp_path / "seed.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in SEED) + "\n\n")
    pd.DataFrame(SEED).to_csv(tmp_path / "seed.csv", index=False)
    pd.DataFrame(SEED).to_parquet(tmp_path / "seed.parquet")
    (tmp_path / "openai.jsonl").write_text("\n".join(json.dumps({"item": r}) for r in SEED))  # OpenAI evals' data source rows
    loaded = [load_dataset(p) for p in (jsonl, tmp_path / "seed.csv", tmp_path / "seed.parquet", tmp_path / "openai.jsonl")]
    loaded += [load_dataset(pd.DataFrame(SEED)), load_dataset(SEED), load_dataset(Dataset(list(SEED)))]
    assert {d.hash for d in loaded} == {loaded[0].hash} and [len(d) for d in loaded] == [2] * 7
    assert loaded[0].name == "seed" and loaded[0].items[0]["expected_type"] == "billing"
    assert load_dataset([{**SEED[0], "input": "changed"}]).hash != loaded[0].hash


@pytest.mark.parametrize(("rows", "message"), [
    ([{"question": "no input"}], "has no input text"),
    (["just a string"], "is a str"),
    ([], "has no items"),  # a run of nothing reported "0/0 passed"
    ({"input": "one item"}, "this is one item: give \\[item\\]"),  # was read as its keys: "Item 0 is a str"
])
def test_a_dataset_without_inputs_is_one_sentence(rows, message):
    from chatkit_lab.evals import load_dataset

    with pytest.raises(ChatLabError, match=message):
        load_dataset(rows)


@pytest.mark.parametrize(("name", "content", "message"), [
    ("bad.json", '{"input": "a"', "Cannot read the dataset bad.json: Expecting ',' delimiter"),
    ("empty.csv", "", "Cannot read the dataset empty.csv: No columns to parse"),
    ("bad.csv", 'input\n"unterminated\n', "Cannot read the dataset bad.csv: Error tokenizing data"),
    ("latin1.jsonl", b'{"input": "caf\xe9"}', "Cannot read the dataset latin1.jsonl: 'utf-8' codec can't decode"),
    ("blank.jsonl", "\n\n", "The dataset 'blank' has no items"),
])
def test_a_dataset_file_that_cannot_be_read_is_one_sentence(tmp_path, name, content, message):
    from chatkit_lab.evals import load_dataset

    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ChatLabError, match=re.escape(message)):
        load_dataset(path)


def test_recorded_threads_become_multi_turn_items(make_lab):
    from chatkit_lab.evals import from_threads

    lab = make_lab(warm=False)
    thread = lab.send_sync("first question").thread_id
    lab.send_sync("second question", thread)
    lab.send_sync("another thread", new_thread=True)
    data = from_threads(lab.turns_df())
    by_thread = {item["thread_id"]: item for item in data.items}
    item = by_thread[thread]
    assert item["input"] == "second question" and [m["role"] for m in item["conversation"]] == ["user", "assistant"]
    assert item["conversation"][0]["content"] == "first question" and "you said" in item["recorded_reply"]
    assert len(data) == 2
    with pytest.raises(ChatLabError, match="These turns hold no recorded exchange"):
        from_threads(lab.turns_df(all_users=True).head(0))


# -- trace grading ------------------------------------------------------------------------
def tool(name, **arguments):
    return {"type": "tool", "name": name, "arguments": arguments}


TRACED = {"output_text": "done", "trajectory": [
    {"type": "agent", "name": "Support"}, tool("search", q="refund", filters={"year": 2026, "tags": ["a", "b"]}), tool("lookup_order", order_id="A1"),
    {"type": "handoff", "name": "Billing"}, tool("search", q="policy"), tool("refund", order_id="A1", amount=10),
    {"type": "node", "id": "route", "name": "Route", "edge": "billing"}, {"type": "guardrail", "name": "Contains PII", "stage": "input", "triggered": True},
]}


def traced(type, value=None, sample=TRACED):
    return grade({"type": type, "value": value}, sample, {})


@pytest.mark.parametrize(("type", "value", "passed"), [
    ("trajectory:tool-used", "refund", True),
    ("trajectory:tool-used", ["search", "refund"], True),
    ("trajectory:tool-used", ["search", "cancel"], False),  # every listed tool must appear
    ("trajectory:tool-used", {"name": "search", "min": 2}, True),
    ("trajectory:tool-used", {"name": "search", "max": 1}, False),  # two calls, at most one allowed
    ("trajectory:tool-used", {"name": "look*"}, True),  # a glob
    ("not-trajectory:tool-used", "cancel", True),  # not- inverts
    ("trajectory:tool-sequence", ["search", "refund"], True),  # in order, gaps allowed
    ("trajectory:tool-sequence", ["refund", "lookup_order"], False),  # out of order
    ("trajectory:tool-sequence", {"steps": ["search", "refund"], "mode": "exact"}, False),
    ("trajectory:tool-sequence", {"steps": ["search", "lookup_order", "search", "refund"], "mode": "exact"}, True),
    ("trajectory:tool-args-match", {"name": "search", "args": {"filters": {"year": 2026}}}, True),  # partial, recursive
    ("trajectory:tool-args-match", {"name": "search", "args": {"filters": {"tags": ["a"]}}}, False),  # lists match whole
    ("trajectory:tool-args-match", {"name": "search", "args": {"q": "policy"}}, True),  # any call may match
    ("trajectory:tool-args-match", {"name": "refund", "args": {"order_id": "A1"}, "mode": "exact"}, False),
    ("trajectory:step-count", {"type": "tool", "min": 4, "max": 4}, True),
    ("trajectory:step-count", {"type": "tool", "pattern": "s*", "max": 1}, False),
    ("trajectory:handoff", "Billing", True),
    ("trajectory:branch", {"node": "route", "edge": "billing"}, True),
    ("trajectory:branch", {"node": "Route", "edge": "general"}, False),
    ("trajectory:guardrail", {"check": "Contains PII", "stage": "input"}, True),
    ("not-trajectory:guardrail", {"stage": "output"}, True),
])
def test_trajectory_graders_match_promptfoo(type, value, passed):
    result = traced(type, value)
    assert (result.passed, result.score, result.error, result.name) == (passed, 1.0 if passed else 0.0, None, type)


def test_trajectory_graders_on_a_sample_without_steps_fail_and_bad_values_are_config_errors():
    assert not traced("trajectory:tool-used", "search", sample={"output_text": ""}).passed
    assert traced("not-trajectory:tool-used", "search", sample={"output_text": ""}).passed
    with pytest.raises(GraderError, match="needs a value"):
        load_grader({"type": "trajectory:tool-used"})
    with pytest.raises(GraderError, match="in_order"):
        load_grader({"type": "trajectory:tool-sequence", "value": {"steps": ["a"], "mode": "sometimes"}})
    with pytest.raises(GraderError, match="an unknown grader type 'trajectory:tool-maybe'"):
        load_grader({"type": "trajectory:tool-maybe", "value": "x"})
    assert grade({"type": "multi", "name": "both", "calculate_output": "(a + b) / 2", "graders": {
        "a": {"type": "trajectory:tool-used", "value": "refund"}, "b": {"type": "trajectory:handoff", "value": "Sales"}}}, TRACED, {}).score == 0.5


def test_recorded_threads_are_graded_from_the_file_without_a_model(make_lab, db_path):
    import duckdb
    from agents import function_tool

    from chatkit_lab.evals.samples import recorded_sample
    from chatkit_lab.workflows import templates

    @function_tool
    def lookup_order(order_id: str) -> str:
        """Look up an order."""
        return f"order {order_id} shipped"

    lab = make_lab(tools=[lookup_order], warm=False,
                   guardrails={"version": 1, "input": {"version": 1, "guardrails": [{"name": "Contains PII", "config": {"entities": ["EMAIL_ADDRESS"]}}]}})
    tooled = lab.send_sync('call lookup_order {"order_id": "A1"}', new_thread=True).thread_id
    lab.use_workflow(templates.customer_support())
    routed = lab.send_sync("billing: I was charged twice", new_thread=True).thread_id
    lab.close()  # the lab and its model are gone: grading reads only the file

    with duckdb.connect(str(db_path), read_only=True) as cur:
        first, second = recorded_sample(cur, tooled), recorded_sample(cur, routed)
        with pytest.raises(ChatLabError, match="has no recorded turn"):
            recorded_sample(cur, "thr_missing")
    assert first["output_text"] == "Tool `lookup_order` returned: order A1 shipped"
    assert first["output_tools"] == [{"id": "call_0", "type": "function", "function": {"name": "lookup_order", "arguments": '{"order_id": "A1"}'}}]
    assert first["input_tokens"] > 0 and first["latency_ms"] > 0
    assert grade({"type": "trajectory:tool-args-match", "value": {"name": "lookup_order", "args": {"order_id": "A1"}}}, first, {}).passed
    assert grade({"type": "string_check", "name": "tool", "input": "{{sample.output_tools[0].function.name}}", "reference": "lookup_order",
                  "operation": "eq"}, first, {}).passed
    assert grade({"type": "trajectory:guardrail", "value": {"check": "Contains PII", "triggered": False}}, first, {}).passed
    assert [s["id"] for s in second["trajectory"] if s["type"] == "node"] == ["start", "pii", "classify", "route", "billing_agent", "grounded", "end"]
    assert grade({"type": "trajectory:branch", "value": {"node": "route", "edge": "billing"}}, second, {}).passed
    assert not grade({"type": "trajectory:branch", "value": "technical_agent"}, second, {}).passed
    assert grade({"type": "trajectory:step-count", "value": {"type": "generation", "min": 2, "max": 2}}, second, {}).passed  # classifier + specialist


# -- bridges ------------------------------------------------------------------------------
def test_datasets_go_out_to_inspect_promptfoo_and_fine_tuning(tmp_path):
    from chatkit_lab.evals.bridges import to_finetuning, to_inspect, to_promptfoo

    items = [{"input": "Where is my order?", "expected_type": "shipping", "ideal": "It ships today."},
             {"input": "And the refund?", "conversation": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
              "expected_type": "billing"}]
    assert to_inspect(items, tmp_path / "inspect.jsonl") == {"written": 2, "target": "ideal"}
    first, second = (json.loads(line) for line in (tmp_path / "inspect.jsonl").read_text().splitlines())
    assert first == {"id": 0, "input": "Where is my order?", "target": "It ships today.", "metadata": {"expected_type": "shipping"}}
    assert second["input"][-1] == {"role": "user", "content": "And the refund?"} and len(second["input"]) == 3 and "target" not in second

    graders = [{"type": "string_check", "name": "type", "input": "{{ sample.output_text }}", "reference": "{{ item.expected_type }}", "operation": "ilike"},
               {"type": "latency", "name": "fast", "max": 5000},
               {"type": "not-trajectory:tool-used", "value": "refund"},
               {"type": "score_model", "name": "tone", "input": [{"role": "user", "content": "Rate {{sample.output_text}}"}]}]
    assert to_promptfoo(items, tmp_path / "tests.json", graders) == {"written": 2, "assertions": 3, "unmapped": ["tone"]}
    tests = json.loads((tmp_path / "tests.json").read_text())
    assert tests[0]["assert"] == [{"type": "icontains", "value": "{{expected_type}}", "metric": "type"},
                                  {"type": "latency", "threshold": 5000, "metric": "fast"},
                                  {"type": "not-trajectory:tool-used", "value": "refund", "metric": "not-trajectory:tool-used"}]
    assert tests[1]["vars"] == {"input": "And the refund?", "expected_type": "billing"}

    assert to_finetuning(items, tmp_path / "train.jsonl", instructions="Be brief.") == {"written": 1, "skipped": 1, "reply": "ideal"}
    row = json.loads((tmp_path / "train.jsonl").read_text())
    assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant"] and row["messages"][-1]["content"] == "It ships today."
    with pytest.raises(ChatLabError, match="pass reply="):
        to_finetuning([{"input": "x"}], tmp_path / "none.jsonl")
