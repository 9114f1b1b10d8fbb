"""Trains the offline detector's weights on the shipped labelled set:
``python scripts/train_detector.py`` writes ``src/chatkit_lab/guardrails/data/detector.json``.
Needs scikit-learn (the test extra). Deterministic: the same data gives the same file.
"""

from __future__ import annotations

import json
from pathlib import Path

from sklearn.linear_model import LogisticRegression

from chatkit_lab.guardrails.detector import SIGNALS, WEIGHTS, features

DATA = WEIGHTS.with_name("detector_train.jsonl")
# Which labels count as positive for each model; benign text is the negative class of both.
POSITIVE = {"jailbreak": {"jailbreak"}, "injection": {"injection"}}


def train() -> dict[str, dict[str, object]]:
    rows = [json.loads(line) for line in DATA.read_text().splitlines()]
    names = [*SIGNALS, "signal_count", "two_signals"]
    out = {}
    for kind, positive in POSITIVE.items():
        used = [r for r in rows if r["label"] in positive or r["label"] == "benign"]
        x = [[features(r["text"])[n] for n in names] for r in used]
        y = [int(r["label"] in positive) for r in used]
        model = LogisticRegression(C=10.0, max_iter=1000, class_weight="balanced").fit(x, y)
        out[kind] = {"bias": round(float(model.intercept_[0]), 4),
                     "weights": {n: round(float(w), 4) for n, w in zip(names, model.coef_[0], strict=True) if abs(w) >= 1e-4}}
    return out


if __name__ == "__main__":
    weights = train()
    Path(WEIGHTS).write_text(json.dumps(weights, indent=1) + "\n")
    print(f"wrote {WEIGHTS}")
