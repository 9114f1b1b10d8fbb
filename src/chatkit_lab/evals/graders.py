"""OpenAI's grader JSON, graded locally: ``grade(grader, sample, item)``.

Each grader config is validated strictly (an unknown type, a missing field or a bad value is a
``GraderError`` saying what is wrong). The result has ``score`` (float), ``passed`` (bool) and
``error`` (None, or why the item could not be graded: it then counts as errored, score 0).

Choices where OpenAI's documentation is silent, so the tests pin them:
- ``text_similarity`` passes at ``score >= pass_threshold``; ``score_model`` and ``python`` too,
  and without a ``pass_threshold`` a score passes at the middle of its range (0.5 for [0, 1]).
- ``fuzzy_match`` is ``rapidfuzz.fuzz.WRatio(a, b, processor=default_process) / 100``, the guide's
  own example; ``bleu`` is sacrebleu's ``sentence_bleu(...).score / 100``; ``gleu`` nltk's
  ``sentence_gleu`` on whitespace tokens; ``meteor`` nltk's ``meteor_score`` on lower-cased tokens
  (exact and Porter-stem matches; WordNet synonyms only where nltk's WordNet data is installed,
  which cannot be downloaded offline); ``rouge_1`` … ``rouge_5`` and ``rouge_l`` the F-measure of
  Google's ``rouge-score``; ``cosine`` the cosine similarity of the embedder's vectors.
- ``score_model`` asks the judge for ``{"result": number}``, clamps to ``range``; a result that is
  not a number scores 0 with the error. ``label_model`` asks for one of ``labels``.
- A template path the data does not have errors the item.
"""

from __future__ import annotations

import ast
import json
import logging
import math
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import ChatLabError
from . import formula, sandbox
from .templating import TemplateError, fields_read, render
from .trajectory import KINDS, Trajectory, grade_trajectory

log = logging.getLogger("chatkit_lab")

METRICS = ("fuzzy_match", "bleu", "gleu", "meteor", "rouge_1", "rouge_2", "rouge_3", "rouge_4", "rouge_5", "rouge_l", "cosine")
Embedder = Callable[[list[str]], Awaitable[list[list[float]]]]


class GraderError(ChatLabError):
    """A grader config that is not valid; the message says what to change."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Message(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[dict[str, Any]]
    type: Literal["message"] | None = None


class StringCheck(_Strict):
    type: Literal["string_check"]
    name: str
    input: str
    reference: str
    operation: Literal["eq", "ne", "like", "ilike"]


class TextSimilarity(_Strict):
    type: Literal["text_similarity"]
    name: str
    input: str
    reference: str
    evaluation_metric: Literal["fuzzy_match", "bleu", "gleu", "meteor", "rouge_1", "rouge_2", "rouge_3", "rouge_4", "rouge_5", "rouge_l", "cosine"]
    pass_threshold: float = Field(ge=0)


class ScoreModel(_Strict):
    type: Literal["score_model"]
    name: str
    input: list[Message]
    model: str | None = None
    range: tuple[float, float] = (0.0, 1.0)
    sampling_params: dict[str, Any] | None = None
    pass_threshold: float | None = None

    @model_validator(mode="after")
    def _range(self) -> ScoreModel:
        if self.range[0] >= self.range[1]:
            raise ValueError(f"range {list(self.range)} must go from a low to a higher number")
        return self


class LabelModel(_Strict):
    type: Literal["label_model"]
    name: str
    input: list[Message]
    model: str | None = None
    labels: list[str] = Field(min_length=2)
    passing_labels: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _subset(self) -> LabelModel:
        extra = [label for label in self.passing_labels if label not in self.labels]
        if extra:
            raise ValueError(f"passing_labels {extra} are not among labels {self.labels}")
        return self


class PythonGrader(_Strict):
    type: Literal["python"]
    name: str
    source: str
    image_tag: str | None = None
    pass_threshold: float | None = None

    @model_validator(mode="after")
    def _defines_grade(self) -> PythonGrader:
        # Parsed, never run, here: a typo is found before a run sends every item to the model.
        try:
            tree = ast.parse(self.source, "<grader>")
        except SyntaxError as exc:
            raise ValueError(f"source is not Python: {exc.msg} on line {exc.lineno}") from None
        bound = {n.name if isinstance(n, ast.FunctionDef) else n.id if isinstance(n, ast.Name) else (n.asname or n.name)
                 for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.alias) or (isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store))}
        if "grade" not in bound:
            raise ValueError("source defines no grade(sample, item) function")
        return self


class Metric(_Strict):
    """chatkit-lab's metric graders (not OpenAI's): the turn's latency, tokens or cost against a limit."""

    type: Literal["latency", "tokens", "cost"]
    name: str
    max: float = Field(gt=0)  # ms, tokens or US dollars


class Multi(_Strict):
    type: Literal["multi"]
    name: str
    graders: dict[str, Annotated[StringCheck | TextSimilarity | ScoreModel | LabelModel | PythonGrader | Metric | Trajectory, Field(discriminator="type")]]
    calculate_output: str
    pass_threshold: float | None = None


Grader = Annotated[StringCheck | TextSimilarity | ScoreModel | LabelModel | PythonGrader | Metric | Trajectory | Multi, Field(discriminator="type")]
TYPES = ("string_check", "text_similarity", "score_model", "label_model", "python", "multi", "latency", "tokens", "cost",
         *(f"trajectory:{kind}" for kind in KINDS))


def load_graders_file(path: str | Path) -> list[Any]:
    """Graders from a file: a JSON list, OpenAI's eval config (``{"testing_criteria": [...]}``),
    one grader object, or JSONL (one grader per line); each checked."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise GraderError(f"There is no graders file {str(file)!r}.")
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise GraderError(f"Cannot read the graders file {file.name}: {getattr(exc, 'strerror', None) or exc}.") from None
    try:
        data: Any = ([json.loads(line) for line in text.splitlines() if line.strip()] if file.suffix.lower() in (".jsonl", ".ndjson")
                     else json.loads(text))
    except ValueError as exc:
        raise GraderError(f"{file.name} is not JSON: {exc}.") from None
    if isinstance(data, dict):
        data = data.get("testing_criteria", [data])
    if not isinstance(data, list) or not data:
        raise GraderError(f"{file.name} holds no graders: give a list of grader objects.")
    return [load_grader(g) for g in data]


def graders_given(graders: Any) -> list[Any]:
    """``graders=`` as a list: a list of graders, one grader object, OpenAI's eval config
    (``{"testing_criteria": [...]}``) or a graders file's path (``load_graders_file``)."""
    if isinstance(graders, str | Path):
        return load_graders_file(graders)
    if isinstance(graders, dict):
        return list(graders.get("testing_criteria", [graders]))
    return list(graders)


def load_grader(config: dict[str, Any] | BaseModel) -> Any:
    """A grader config (OpenAI's JSON), checked."""
    if isinstance(config, BaseModel):
        return config
    if not isinstance(config, dict):
        raise GraderError(f'A grader is a JSON object such as {{"type": "string_check", ...}}, not {type(config).__name__}.')
    if isinstance(config.get("graders"), dict) and any(isinstance(g, dict) and g.get("type") == "multi" for g in config["graders"].values()):
        raise GraderError(f"Grader {config.get('name')!r}: a multi grader cannot hold another multi grader (OpenAI does not nest them).")
    from pydantic import TypeAdapter

    try:
        grader = TypeAdapter(Grader).validate_python(config)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"][1:] if not str(p).startswith(("function-after", "tagged-union")))
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            message = f"an unknown grader type {config.get('type')!r}; the types are {', '.join(TYPES)}"
        raise GraderError(f"Grader {config.get('name', '')!r}: {where + ': ' if where else ''}{message}.") from None
    if isinstance(grader, Multi):
        try:
            formula.parse(grader.calculate_output, list(grader.graders))
        except formula.FormulaError as exc:
            raise GraderError(f"Grader {grader.name!r}: {exc}") from None
    try:
        item_fields(grader)
    except TemplateError as exc:
        raise GraderError(f"Grader {grader.name!r}: {exc}") from None
    return grader


def item_fields(grader: Any) -> set[str]:
    """The item fields ``grader``'s templates read (``{{ item.expected }}``: expected)."""
    def strings(value: Any) -> Iterator[str]:
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict | list):  # a python grader's source is code, not a template (f"{{x}}"), at any depth
            for inner in [v for k, v in value.items() if k != "source"] if isinstance(value, dict) else value:
                yield from strings(inner)

    config = grader.model_dump() if isinstance(grader, BaseModel) else grader
    return {str(field) for text in strings(config) for namespace, field in fields_read(text) if namespace == "item" and field is not None}


def check_item_fields(graders: Sequence[Any], items: Sequence[dict[str, Any]]) -> None:
    """Refuse, before a run, a grader that reads an item field no item has: each item would error."""
    have = {key for item in items for key in item}
    for given in graders:
        grader = load_grader(given)
        missing = sorted(item_fields(grader) - have)
        if missing:
            raise GraderError(f"Grader {grader.name!r} reads item.{missing[0]}, which no item of the dataset has "
                              f"(its fields: {', '.join(sorted(have))}).")


@dataclass
class Graded:
    """One grader's result on one item."""

    name: str
    type: str
    score: float
    passed: bool
    error: str | None = None
    info: dict[str, Any] | None = None


Judge = Callable[[list[dict[str, Any]], dict[str, Any], str | None], Awaitable[dict[str, Any]]]  # (messages, json schema, model) -> parsed reply


async def agrade(grader: Any, sample: dict[str, Any], item: dict[str, Any], *, judge: Judge | None = None, embedder: Embedder | None = None,
                 prices: dict[str, tuple[float, float]] | None = None) -> Graded:
    """Grade ``sample`` (``output_text``, ``output_json``, ``output_tools``, ``latency_ms``,
    tokens, ``model``, the trace) against ``item`` (the dataset row)."""
    config = load_grader(grader)
    values = {"item": item, "sample": sample}
    try:
        return await _grade(config, values, judge, embedder, prices)
    except (TemplateError, formula.FormulaError, GraderError) as exc:
        return Graded(config.name, config.type, 0.0, False, str(exc))
    except Exception as exc:  # a judge or embedder of the user's: this item errors, the run goes on
        log.warning("Grader %r failed on an item", config.name, exc_info=True)
        return Graded(config.name, config.type, 0.0, False, f"{type(exc).__name__}: {exc}")


def grade(grader: Any, sample: dict[str, Any], item: dict[str, Any], model: Any = None, *, embedder: Embedder | None = None) -> Graded:
    """``agrade`` from code that is not async; ``model``: the judge of model graders (any Agents
    SDK model or a model name; the offline model by default)."""
    from ..guardrails.engine import run_sync

    result: Graded = run_sync(agrade(grader, sample, item, judge=model_judge(model), embedder=embedder))
    return result


async def _grade(config: Any, values: dict[str, Any], judge: Judge | None, embedder: Embedder | None, prices: Any) -> Graded:
    match config:
        case StringCheck():
            text, reference = render(config.input, values), render(config.reference, values)
            ok = {"eq": text == reference, "ne": text != reference, "like": reference in text, "ilike": reference.lower() in text.lower()}[config.operation]
            return Graded(config.name, config.type, 1.0 if ok else 0.0, ok)
        case TextSimilarity():
            text, reference = render(config.input, values), render(config.reference, values)
            score = await similarity(config.evaluation_metric, text, reference, embedder)
            return Graded(config.name, config.type, score, score >= config.pass_threshold)
        case ScoreModel():
            return await _score_model(config, values, judge)
        case LabelModel():
            return await _label_model(config, values, judge)
        case PythonGrader():
            outcome = await sandbox.run_grader(config.source, values["sample"], values["item"])
            if outcome.score is None:
                return Graded(config.name, config.type, 0.0, False, outcome.error)
            threshold = 0.5 if config.pass_threshold is None else config.pass_threshold
            return Graded(config.name, config.type, outcome.score, outcome.score >= threshold)
        case Metric():
            return _metric(config, values["sample"], prices)
        case Trajectory():
            ok, seen = grade_trajectory(config, values["sample"])
            return Graded(config.name, config.type, 1.0 if ok else 0.0, ok, None, seen)
        case Multi():
            parts = {key: await _grade(g, values, judge, embedder, prices) for key, g in config.graders.items()}
            errors = [f"{k}: {p.error}" for k, p in parts.items() if p.error]
            score = formula.evaluate(formula.parse(config.calculate_output, list(parts)), {k: p.score for k, p in parts.items()})
            threshold = 0.5 if config.pass_threshold is None else config.pass_threshold
            return Graded(config.name, config.type, score, score >= threshold and not errors, "; ".join(errors) or None,
                          {k: p.score for k, p in parts.items()})
    raise GraderError(f"No grading for {type(config).__name__}.")  # pragma: no cover - load_grader refuses it


async def similarity(metric: str, text: str, reference: str, embedder: Embedder | None = None) -> float:
    """``text`` against ``reference`` by one of ``METRICS`` (0..1)."""
    if metric == "fuzzy_match":
        from rapidfuzz import fuzz, utils

        return float(fuzz.WRatio(text, reference, processor=utils.default_process)) / 100
    if metric == "bleu":
        import sacrebleu

        return float(sacrebleu.sentence_bleu(text, [reference]).score) / 100
    if metric == "gleu":
        from nltk.translate.gleu_score import sentence_gleu

        return float(sentence_gleu([reference.split()], text.split()))
    if metric == "meteor":
        return _meteor(text, reference)
    if metric.startswith("rouge_"):
        from rouge_score import rouge_scorer

        kind = "rougeL" if metric == "rouge_l" else f"rouge{metric[-1]}"
        return float(rouge_scorer.RougeScorer([kind]).score(reference, text)[kind].fmeasure)
    if metric == "cosine":
        if embedder is None:
            raise TemplateError("The cosine metric needs embeddings: pass embedder= (the lab's provider gives one when it is OpenAI).")
        a, b = await embedder([text, reference])
        norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
        return sum(x * y for x, y in zip(a, b, strict=True)) / norm if norm else 0.0
    raise GraderError(f"Unknown evaluation_metric {metric!r}; the metrics are {', '.join(METRICS)}.")  # pragma: no cover


class _NoSynonyms:
    """WordNet without its data: no synonyms (nltk's METEOR then matches exact words and stems)."""

    @staticmethod
    def synsets(*args: Any, **kwargs: Any) -> list[Any]:
        return []


def _meteor(text: str, reference: str) -> float:
    from nltk.translate.meteor_score import meteor_score

    try:
        from nltk.corpus import wordnet

        wordnet.ensure_loaded()
        words: Any = wordnet
    except LookupError:
        words = _NoSynonyms()
    return float(meteor_score([reference.lower().split()], text.lower().split(), wordnet=words))


SCORE_SCHEMA = {"type": "object", "additionalProperties": False, "required": ["result", "steps"], "properties": {
    "result": {"type": "number"},
    "steps": {"type": "array", "items": {"type": "object", "additionalProperties": False, "required": ["description", "conclusion"],
                                          "properties": {"description": {"type": "string"}, "conclusion": {"type": "string"}}}}}}


def _messages(config: Any, values: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for message in config.input:
        if isinstance(message.content, str):
            out.append({"role": message.role, "content": render(message.content, values)})
        else:
            parts = [{**p, **({"text": render(p["text"], values)} if isinstance(p.get("text"), str) else {})} for p in message.content]
            out.append({"role": message.role, "content": parts})
    return out


async def _score_model(config: ScoreModel, values: dict[str, Any], judge: Judge | None) -> Graded:
    low, high = config.range
    threshold = (low + high) / 2 if config.pass_threshold is None else config.pass_threshold
    reply = await (judge or model_judge(None))(_messages(config, values), SCORE_SCHEMA, config.model)
    result = reply.get("result")
    if isinstance(result, bool) or not isinstance(result, int | float) or not math.isfinite(result):
        return Graded(config.name, config.type, 0.0, False, f"the judge's result {json.dumps(result)} is not a number", {"reply": reply})
    score = min(max(float(result), low), high)
    return Graded(config.name, config.type, score, score >= threshold, None, {"steps": reply.get("steps"), "raw": result})


async def _label_model(config: LabelModel, values: dict[str, Any], judge: Judge | None) -> Graded:
    schema = {"type": "object", "additionalProperties": False, "required": ["label"], "properties": {"label": {"type": "string", "enum": config.labels}}}
    reply = await (judge or model_judge(None))(_messages(config, values), schema, config.model)
    label = reply.get("label")
    if label not in config.labels:
        return Graded(config.name, config.type, 0.0, False, f"the judge answered {json.dumps(label)}, not one of {config.labels}", {"reply": reply})
    ok = label in config.passing_labels
    return Graded(config.name, config.type, 1.0 if ok else 0.0, ok, None, {"label": label})


DEFAULT_PRICES: dict[str, tuple[float, float]] = {  # US dollars per million input / output tokens (the seed's table)
    "gpt-4.1": (2.00, 8.00), "gpt-4.1-mini": (0.40, 1.60), "gpt-4.1-nano": (0.10, 0.40), "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60), "gpt-5": (1.25, 10.00), "gpt-5-mini": (0.25, 2.00), "o4-mini": (1.10, 4.40),
}


def checked_prices(prices: Any) -> dict[str, tuple[float, float]] | None:
    """``prices=`` as ``{model: (input, output)}`` US dollars per million tokens, or a sentence."""
    if prices is None:
        return None
    example = 'such as {"gpt-4.1-mini": (0.40, 1.60)}'
    if not isinstance(prices, dict):
        raise GraderError(f"prices= maps a model name to its (input, output) US dollars per million tokens, {example}; not {type(prices).__name__}.")
    for model, price in prices.items():
        if (not isinstance(price, list | tuple) or len(price) != 2
                or not all(isinstance(p, int | float) and not isinstance(p, bool) and math.isfinite(p) and p >= 0 for p in price)):
            raise GraderError(f"prices[{model!r}] is {price!r}; give two numbers, input and output US dollars per million tokens, {example}.")
    return {str(model): (float(price[0]), float(price[1])) for model, price in prices.items()}


def cost_of(sample: dict[str, Any], prices: dict[str, tuple[float, float]] | None = None) -> float | None:
    """US dollars of a sample's tokens at ``prices`` (None when its model has no price)."""
    table = {**DEFAULT_PRICES, **(prices or {})}
    price = table.get(str(sample.get("model")))
    if price is None:
        return None
    return (float(sample.get("input_tokens") or 0) * price[0] + float(sample.get("output_tokens") or 0) * price[1]) / 1e6


def _metric(config: Metric, sample: dict[str, Any], prices: dict[str, tuple[float, float]] | None) -> Graded:
    if config.type == "latency":
        value = sample.get("latency_ms")
    elif config.type == "tokens":
        value = (sample.get("input_tokens") or 0) + (sample.get("output_tokens") or 0) if sample.get("input_tokens") is not None else None
    else:
        value = cost_of(sample, prices)
    if value is None:
        what = {"latency": "the sample has no latency_ms", "tokens": "the sample has no token counts",
                "cost": f"there is no price for model {sample.get('model')!r} (pass prices={{model: (input, output) per million tokens}})"}[config.type]
        return Graded(config.name, config.type, 0.0, False, what)
    ok = float(value) < config.max
    return Graded(config.name, config.type, 1.0 if ok else 0.0, ok, None, {"value": float(value), "max": config.max})


def model_judge(model: Any) -> Judge:
    """A judge on any Agents SDK model (or model name); None: the offline model, deterministic."""
    from agents import Agent, RunConfig, Runner

    from ..models import resolve_backend
    from ..workflows.run import JsonSchemaOutput

    backend = resolve_backend(model if model is not None else "offline")

    async def judge(messages: list[dict[str, Any]], schema: dict[str, Any], name: str | None) -> dict[str, Any]:
        system = "\n\n".join(str(m["content"]) for m in messages if m["role"] in ("system", "developer"))
        rest: list[Any] = [m for m in messages if m["role"] not in ("system", "developer")] or [{"role": "user", "content": "Grade."}]
        agent = Agent(name="grader", instructions=system or None, model=backend.model_named(name) if name else backend.model,
                      output_type=JsonSchemaOutput(schema, "grade"))
        try:
            result = await Runner.run(agent, rest, run_config=RunConfig(tracing_disabled=True))  # a grade, not a turn of the lab
        except Exception as exc:  # no key, an unreachable provider: the item's grade says so, the run goes on
            from ..failures import describe_failure

            raise GraderError(f"The judge model failed: {describe_failure(exc, backend)[0]}") from exc
        return dict(result.final_output)

    return judge


__all__ = ["DEFAULT_PRICES", "METRICS", "Graded", "GraderError", "agrade", "cost_of", "grade", "load_grader", "load_graders_file", "model_judge", "similarity"]
