"""Evals in the notebook, offline by default: OpenAI's grader JSON graded locally.

    >>> from chatkit_lab.evals import grade
    >>> grade({"type": "string_check", "name": "exact", "input": "{{ sample.output_text }}",
    ...        "reference": "{{ item.answer }}", "operation": "eq"},
    ...       {"output_text": "Paris"}, {"answer": "Paris"}).passed
    True

Grader types: ``string_check``, ``text_similarity``, ``score_model``, ``label_model``, ``python``
and ``multi`` as OpenAI defines them, chatkit-lab's ``latency``, ``tokens`` and ``cost``, and
trace graders in promptfoo's ``trajectory:*`` shapes (``evals.trajectory``) over what a turn did.
``to_inspect``, ``to_promptfoo`` and ``to_finetuning`` write a dataset for other tools.
``recorded_sample`` reads a stored thread's last turn as a sample, so it is graded without a model.
``lab.evaluate`` returns an ``EvalRun`` (summary, frame, report); ``lab.compare_runs`` a
``RunComparison``; ``lab.optimize_sync`` an ``Optimization`` (its rounds and the best run).
"""

from .bridges import to_finetuning, to_inspect, to_promptfoo
from .compare import RunComparison
from .datasets import Dataset, content_hash, from_threads, load_dataset
from .graders import (
           DEFAULT_PRICES,
           METRICS,
           Graded,
           GraderError,
           agrade,
           cost_of,
           grade,
           load_grader,
           load_graders_file,
           model_judge,
           similarity,
)
from .optimize import Optimization
from .report import EvalRun
from .samples import recorded_sample
from .templating import TemplateError, render

__all__ = [
           "DEFAULT_PRICES",
           "METRICS",
           "Dataset",
           "EvalRun",
           "Graded",
           "GraderError",
           "Optimization",
           "RunComparison",
           "TemplateError",
           "agrade",
           "content_hash",
           "cost_of",
           "from_threads",
           "grade",
           "load_dataset",
           "load_grader",
           "load_graders_file",
           "model_judge",
           "recorded_sample",
           "render",
           "similarity",
           "to_finetuning",
           "to_inspect",
           "to_promptfoo",
]
