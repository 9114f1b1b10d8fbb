"""Measuring guardrails: ``evaluate_guardrails`` over openai-guardrails' eval format, JSONL lines
``{"id", "data", "expected_triggers": {"<check name>": bool}}`` (``data`` may be a JSON list of
``{"role", "content"}`` turns: the last is checked, the others are its history). Lines that also say
``expected_entities`` are scored per PII entity too.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ChatLabError
from .engine import Guardrails, run_sync
from .judge import Judge

if TYPE_CHECKING:
    import pandas as pd

DATA = Path(__file__).with_name("data") / "eval"
FPR = 0.01  # the false-positive rate "recall at FPR" is read at
RECALLS = (0.8, 0.9, 0.95)


def dataset_path(name: str) -> Path:
    """A labelled set shipped with chatkit-lab: "pii" or "prompts" (benign prompts)."""
    path = DATA / f"{name}.jsonl"
    if not path.is_file():
        raise ChatLabError(f"There is no shipped dataset {name!r}; choose one of {', '.join(sorted(p.stem for p in DATA.glob('*.jsonl')))}.")
    return path


def load_dataset(dataset: str | Path | Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(dataset, str | Path):
        path = Path(dataset).expanduser()
        if not path.is_file():
            raise ChatLabError(f"There is no dataset file {str(path)!r}.")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ChatLabError(f"Cannot read the dataset {path.name}: {exc}.") from None
        lines = [(i, line) for i, line in enumerate(text.splitlines(), 1) if line.strip()]
        rows = []
        for number, line in lines:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ChatLabError(f"{path.name}, line {number}: not JSON ({exc}).") from None
    else:
        rows = list(dataset)
    if not rows:  # metrics of nothing: an empty table, as if the config had no checks
        raise ChatLabError('The dataset has no samples; each line is {"id": ..., "data": "...", "expected_triggers": {"<check name>": true}}.')
    for number, row in enumerate(rows, 1):
        ok = isinstance(row, dict) and "data" in row and isinstance(row.get("expected_triggers"), dict)
        if not ok or not all(isinstance(v, bool) for v in row["expected_triggers"].values()):
            raise ChatLabError(f'Sample {number} should be {{"id": ..., "data": "...", "expected_triggers": {{"<check name>": true}}}}, '
                               f"not {json.dumps(row, default=str)[:100]}.")
    return rows


def _turns(data: Any) -> tuple[str, list[dict[str, str]]]:
    if isinstance(data, str) and data.lstrip().startswith("["):
        try:
            turns = json.loads(data)
        except json.JSONDecodeError:
            return data, []
        if isinstance(turns, list) and turns and all(isinstance(t, dict) and "content" in t for t in turns):
            return str(turns[-1]["content"]), [{"role": str(t.get("role", "user")), "content": str(t["content"])} for t in turns[:-1]]
    return str(data), []


def _triggered(result: Any) -> bool:
    # Contains PII in mask mode masks instead of tripping; what a PII eval asks is whether it found PII.
    return bool(result.tripwire_triggered or (result.name == "Contains PII" and result.info.get("pii_detected")))


def _auc(scores: pd.Series, labels: pd.Series) -> float | None:
    # The Mann-Whitney form of ROC AUC: the chance that a positive outscores a negative (ties half).
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if not positives or not negatives:
        return None
    ranks = scores.rank()
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def _recall_at_fpr(scores: pd.Series, labels: pd.Series, fpr: float) -> float | None:
    negatives = scores[~labels].sort_values(ascending=False)
    if not len(negatives) or not labels.any():
        return None
    allowed = int(fpr * len(negatives))  # false positives we may accept
    threshold = negatives.iloc[allowed] if allowed < len(negatives) else -1.0
    return float((scores[labels] > threshold).mean())


def _precision_at_recall(scores: pd.Series, labels: pd.Series, recall: float) -> float | None:
    if not labels.any():
        return None
    needed = int(-(-recall * labels.sum() // 1))
    threshold = scores[labels].sort_values(ascending=False).iloc[needed - 1]
    flagged = scores >= threshold
    return float(labels[flagged].mean())


def _ratio(a: float, b: float) -> float:
    return a / b if b else 0.0  # as openai-guardrails: 0.0 on a zero denominator


@dataclass
class GuardrailEval:
    """``results``: one row per sample and check; ``metrics``: one row per check (confusion
    matrix, precision, recall, F1; ROC AUC, recall at 1% FPR and precision at fixed recalls for
    checks with a confidence); ``entities``: per PII entity, when the samples name them."""

    results: pd.DataFrame
    metrics: pd.DataFrame
    entities: pd.DataFrame | None

    def plot(self) -> Any:
        """ROC curves of the checks with a confidence, beside each check's confusion counts."""
        from ..logs import chart

        fig = chart()(figsize=(9, 3.2), layout="constrained")
        roc, counts = fig.subplots(1, 2)
        for name, rows in self.results.dropna(subset=["confidence"]).groupby("check_name"):
            labels = rows.expected.astype(bool)
            if labels.all() or not labels.any():
                continue
            points = [(float(((rows.confidence >= t) & ~labels).sum() / (~labels).sum()), float(((rows.confidence >= t) & labels).sum() / labels.sum()))
                      for t in sorted({*rows.confidence, 1.01}, reverse=True)]
            roc.plot(*zip(*[(0.0, 0.0), *points], strict=True), label=str(name), drawstyle="steps-post")
        roc.plot([0, 1], [0, 1], color="#bbb", linewidth=0.8, linestyle="--")
        roc.set(xlabel="false-positive rate", ylabel="recall", title="ROC (checks with a confidence)")
        if roc.get_legend_handles_labels()[0]:
            roc.legend(loc="lower right")
        m = self.metrics.set_index("check_name")
        bottom = None
        for column, colour in (("tp", "#54a24b"), ("fn", "#e45756"), ("fp", "#f58518"), ("tn", "#bab0ac")):
            counts.barh(list(m.index), m[column], left=bottom, color=colour, label=column.upper())
            bottom = m[column] if bottom is None else bottom + m[column]
        counts.set(xlabel="samples", title="Confusion counts per check")
        counts.legend(loc="lower right")
        return fig

    def __repr__(self) -> str:
        return f"<GuardrailEval of {self.results.id.nunique()} samples>\n{self.metrics.to_string(index=False)}"

    def _repr_html_(self) -> str:
        return self.metrics.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="")


async def aevaluate_guardrails(
    dataset: str | Path | Iterable[dict[str, Any]], config: Any, *, stage: str | None = None, judge: Judge | None = None, concurrency: int = 8,
) -> GuardrailEval:
    guardrails = config if isinstance(config, Guardrails) else Guardrails(config, judge=judge)
    stages = [stage] if stage else list(guardrails.pipeline.stages)
    samples = load_dataset(dataset)
    if stage is not None and guardrails.pipeline.stage(stage) is None:
        raise ChatLabError(f"This config has no stage {stage!r}; its stages are {', '.join(guardrails.pipeline.stages)}.")
    running = {check.name for name in stages for check in guardrails.pipeline.stages[name].checks}
    labelled = {name for sample in samples for name in sample["expected_triggers"]}
    if samples and not running & labelled:  # nothing would be scored: say why instead of an empty table
        raise ChatLabError(f"No sample labels a check this config runs: it runs {', '.join(sorted(running))}; the samples' "
                           f"expected_triggers name {', '.join(sorted(labelled)) or 'none'}.")
    limit = asyncio.Semaphore(concurrency)

    async def one(sample: dict[str, Any]) -> list[dict[str, Any]]:
        text, history = _turns(sample["data"])
        rows = []
        async with limit:
            for name in stages:
                report = await guardrails.run(name, text, history=history, judge=judge)
                for r in report.results:
                    if r.name not in sample["expected_triggers"]:
                        continue
                    detected = sorted({e.removesuffix("_ENCODED") for e in (r.info.get("detected_entities") or {})})
                    rows.append({"id": sample.get("id"), "stage": name, "check_name": r.name, "expected": sample["expected_triggers"][r.name],
                                 "triggered": _triggered(r), "confidence": r.confidence, "execution_failed": r.execution_failed,
                                 "detected_entities": detected, "expected_entities": sample.get("expected_entities")})
        return rows

    import pandas as pd

    results = pd.DataFrame([row for rows in await asyncio.gather(*(one(s) for s in samples)) for row in rows],
                           columns=["id", "stage", "check_name", "expected", "triggered", "confidence", "execution_failed", "detected_entities", "expected_entities"])
    return GuardrailEval(results, _metrics(results), _entity_metrics(results))


def evaluate_guardrails(
    dataset: str | Path | Iterable[dict[str, Any]], config: Any, *, stage: str | None = None, judge: Judge | None = None, concurrency: int = 8,
) -> GuardrailEval:
    """Run ``config`` (every stage, or ``stage``) on each sample and score each check against
    ``expected_triggers``. Samples that do not name a check are not counted for it; Contains PII
    counts as triggered when it finds PII, in mask mode too."""
    return run_sync(aevaluate_guardrails(dataset, config, stage=stage, judge=judge, concurrency=concurrency))


def _metrics(results: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    rows = []
    for name, r in results.groupby("check_name", sort=False):
        expected, got = r.expected.astype(bool), r.triggered.astype(bool)
        tp, fp = int((expected & got).sum()), int((~expected & got).sum())
        fn, tn = int((expected & ~got).sum()), int((~expected & ~got).sum())
        precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
        row: dict[str, Any] = {"check_name": name, "samples": len(r), "tp": tp, "fp": fp, "fn": fn, "tn": tn, "precision": precision,
                               "recall": recall, "f1": _ratio(2 * precision * recall, precision + recall), "errors": int(r.execution_failed.sum())}
        scored = r.dropna(subset=["confidence"])
        if len(scored) == len(r) and len(r):
            scores, labels = scored.confidence.astype(float).reset_index(drop=True), scored.expected.astype(bool).reset_index(drop=True)
            row["roc_auc"] = _auc(scores, labels)
            row["recall_at_fpr_1pct"] = _recall_at_fpr(scores, labels, FPR)
            for recall_at in RECALLS:
                row[f"precision_at_recall_{recall_at:g}"] = _precision_at_recall(scores, labels, recall_at)
        rows.append(row)
    return pd.DataFrame(rows)


def _entity_metrics(results: pd.DataFrame) -> pd.DataFrame | None:
    import pandas as pd

    named = results[results.check_name.eq("Contains PII") & results.expected_entities.notna()]
    if named.empty:
        return None
    counts: dict[str, dict[str, int]] = {}
    for expected, detected in zip(named.expected_entities, named.detected_entities, strict=True):
        for entity in {*expected, *detected}:
            c = counts.setdefault(entity, {"tp": 0, "fp": 0, "fn": 0})
            c["tp" if entity in expected and entity in detected else "fn" if entity in expected else "fp"] += 1
    rows = [{"entity": e, **c, "precision": _ratio(c["tp"], c["tp"] + c["fp"]), "recall": _ratio(c["tp"], c["tp"] + c["fn"])}
            for e, c in sorted(counts.items())]
    return pd.DataFrame(rows)
