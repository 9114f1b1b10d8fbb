"""Evals on a lab's runtime: what answers (targets), runs with a progress bar, stored runs,
comparisons and prompt-optimisation rounds. ``ChatLab``'s eval methods delegate here.

What needs no lab (datasets, graders, samples, the two phases of a run, reports) lives in
``chatkit_lab.evals``; this module only knows how a lab's agent, workflows and loop are reached.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from agents import Agent

from . import replay
from ._runtime import Runtime
from .context import ContextInjection
from .errors import ChatLabError
from .evals import runs
from .evals.compare import RunComparison
from .evals.datasets import Dataset, load_dataset
from .evals.graders import GraderError, check_item_fields, checked_prices, graders_given, model_judge
from .evals.optimize import Optimization, failures, improves, propose
from .evals.report import EvalRun, load_run
from .models import Backend
from .store.items import utc_now
from .store.memory import MemoryStore
from .workflows import versions
from .workflows.turns import ChatWorkflow

OVERRIDES = ("instructions", "model", "tools", "context")  # what an overrides target changes, as lab.replay does
ROUNDS_SQL = "SELECT * FROM eval_rounds WHERE optimization_id = ? ORDER BY round"


@dataclass
class Planned:
    """A run about to go: its id, data, what answers (None: nothing, only grading) and graders."""

    run_id: str
    data: Dataset
    target: runs.Target | None
    graders: list[Any]


class Evaluations:
    """A lab's evals on its runtime and ``backend`` (the model of targets and judges).
    ``chat_workflow`` turns a workflow reference into a ``ChatWorkflow``; ``user_id`` says who
    runs (the lab's current user)."""

    def __init__(self, runtime: Runtime, backend: Backend, chat_workflow: Callable[[Any], ChatWorkflow], user_id: Callable[[], str]) -> None:
        self.runtime, self.backend, self.chat_workflow, self.user_id = runtime, backend, chat_workflow, user_id

    # -- targets ---------------------------------------------------------------------------
    def target(self, target: Any) -> runs.Target:
        """What answers: a server like the lab's on an in-memory store whose threads a run writes
        to the file in batches (see ``runs.answer_all``)."""
        server, staged = self.runtime.server, MemoryStore()
        described: dict[str, Any]
        injection = None
        if target == "recorded":
            return runs.Target({"kind": "recorded", "label": "recorded"}, None)
        if target is None:
            label = server.workflow.resolved.label if server.workflow else "lab"
            agent: Any = server.agent  # the lab's own, even one built per thread
            described, backend, workflow = {"kind": "lab", "label": label}, self.backend, server.workflow
        elif isinstance(target, Agent):
            described, agent, backend, workflow = {"kind": "agent", "label": f"agent {target.name}"}, target, self.backend, None
        elif isinstance(target, dict):
            unknown = set(target) - set(OVERRIDES)
            if unknown:
                raise ChatLabError(f"An overrides target takes {', '.join(OVERRIDES)}, not {', '.join(sorted(unknown))}.")
            tools = target.get("tools")
            agent, backend = replay.overridden_agent(self._agent(), self.backend, instructions=target.get("instructions"), model=target.get("model"),
                                                     tools=tools)
            overrides: dict[str, Any] = {k: str(target[k]) for k in ("instructions", "model") if target.get(k) is not None}
            if tools is not None:
                overrides["tools"] = [getattr(t, "name", str(t)) for t in tools]
            if target.get("context") is not None:
                overrides["context"] = json.loads(json.dumps(target["context"], default=str))
                injection = _with_values(server.injection, overrides["context"])
            described, workflow = {"kind": "overrides", "label": "overrides", "overrides": overrides}, None
        else:
            workflow = self.chat_workflow(target)
            described = {"kind": "workflow", "label": workflow.resolved.label, "workflow_hash": workflow.resolved.workflow_hash}
            agent, backend = self._agent(), self.backend
        derived = replay.derived_server(self.runtime, agent, backend, workflow, {}, store=staged, as_the_lab=described["kind"] in ("lab", "overrides"))
        if injection is not None:
            derived.injection = injection
        return runs.Target(described, derived, staged)

    def _stored_workflow(self, described: dict[str, Any]) -> Any:
        """A workflow run's graph: its published ``name@N``, or a draft's graph from the store."""
        if not str(described["label"]).endswith("@draft"):
            return described["label"]
        if "workflow_hash" not in described:
            raise ChatLabError(f"This run's target ({described['label']}) is not stored whole: pass target= again.")
        with self.runtime.db.cursor() as cur:
            return versions.load(cur, described["workflow_hash"])

    def _agent(self) -> Agent:
        agent = self.runtime.server.agent
        if not isinstance(agent, Agent):
            raise ChatLabError("This lab builds its agent per thread; pass an Agent as target=.")
        return agent

    def stored_target(self, described: dict[str, Any]) -> runs.Target:
        kind = described.get("kind")
        if kind in ("lab", "recorded"):
            return self.target(None if kind == "lab" else "recorded")
        if kind == "overrides":
            if "tools" in described["overrides"]:
                raise ChatLabError("This run's tools are not stored (only their names): pass target= again to resume it.")
            return self.target(described["overrides"])
        if kind == "workflow":
            return self.target(self._stored_workflow(described))
        raise ChatLabError(f"This run's target ({described.get('label')}) is not stored whole: pass target= again to resume it.")

    # -- runs ------------------------------------------------------------------------------
    def plan(self, dataset: Any, graders: Sequence[Any], target: Any, name: str | None, concurrency: int,
             kind: str = "evaluate", parent: str | None = None, prices: Any = None) -> Planned:
        checked_prices(prices)  # before the run is stored
        data, graders = load_dataset(dataset), graders_given(graders)
        if not graders:  # a run would report "0/0 passed" however its answers were
            raise GraderError('graders= is empty: give at least one grader, such as {"type": "string_check", ...}.')
        check_item_fields(graders, data.items)
        chosen = target if isinstance(target, runs.Target) else self.target(target)
        run_id = self.runtime.call(self._stored(data, chosen, graders, name, concurrency, kind, parent))
        return Planned(run_id, data, chosen, list(graders))

    async def _stored(self, data: Dataset, target: runs.Target, graders: Sequence[Any], name: str | None, concurrency: int,
                      kind: str, parent: str | None) -> str:
        async with self.runtime.db.transaction() as cur:
            run_id = runs.new_run(cur, data, target, graders, name=name, user_id=self.user_id(), concurrency=concurrency, kind=kind, parent=parent,
                                  redact=self.runtime.redact)
            if kind == "rescore" and parent is not None:
                runs.copy_answers(cur, parent, run_id)
            return run_id

    def resumed(self, run_id: str, target: Any) -> Planned:
        with self.runtime.db.cursor() as cur:
            data, graders, described = runs.stored_run(cur, run_id, self.user_id())
        return Planned(run_id, data, self.target(target) if target is not None else self.stored_target(described), graders)

    def rescored(self, run_id: str, graders: Sequence[Any], name: str | None) -> Planned:
        with self.runtime.db.cursor() as cur:
            data, _, _ = runs.stored_run(cur, run_id, self.user_id())
        planned = self.plan(data, graders, runs.Target({"kind": "rescore", "label": f"rescore of {run_id}"}, None), name, 16, "rescore", run_id)
        planned.target = None  # its answers are the source run's: nothing is asked again
        return planned

    async def _go(self, planned: Planned, judge: Any, prices: Any, concurrency: int, done: list[int]) -> str:
        user = self.user_id()
        if planned.target is not None:
            await runs.answer_all(self.runtime, planned.run_id, planned.data, planned.target, user, concurrency, done)
        done[0] = len(planned.data)
        judging = model_judge(judge if judge is not None else self.backend.model)
        await runs.grade_all(self.runtime, planned.run_id, planned.data, planned.graders, user, prices=prices, concurrency=concurrency, judge=judging)
        return planned.run_id

    def _job(self, planned: Planned, judge: Any, prices: Any, concurrency: int) -> tuple[replay.Job, Callable[[], int], int, str]:
        prices = checked_prices(prices)
        done = [0]
        return replay.Job(self.runtime.loop, self._go(planned, judge, prices, concurrency, done)), lambda: done[0], len(planned.data), f"eval {planned.data.name}"

    def finish_sync(self, planned: Planned, *, judge: Any = None, prices: Any = None, concurrency: int = 16, progress: bool = True) -> EvalRun:
        return self.run(replay.waiting(*self._job(planned, judge, prices, concurrency), progress))

    async def finish(self, planned: Planned, *, judge: Any = None, prices: Any = None, concurrency: int = 16, progress: bool = True) -> EvalRun:
        return self.run(await replay.awaiting(*self._job(planned, judge, prices, concurrency), progress))

    def run(self, run_id: str) -> EvalRun:
        self.runtime.flush()
        with self.runtime.db.cursor() as cur:
            return load_run(cur, run_id, self.user_id())

    def compare(self, a: EvalRun | str, b: EvalRun | str) -> RunComparison:
        return RunComparison.of(a if isinstance(a, EvalRun) else self.run(a), b if isinstance(b, EvalRun) else self.run(b))

    # -- prompt optimisation ---------------------------------------------------------------
    def optimize_sync(self, run_id: str, *, node: str | None = None, rounds: int = 1, judge: Any = None, prices: Any = None,
                      concurrency: int = 16, progress: bool = True) -> Optimization:
        if rounds < 1:
            raise ChatLabError("rounds= is at least 1.")
        base = self.run(run_id)
        with self.runtime.db.cursor() as cur:
            data, graders, described = runs.stored_run(cur, run_id, self.user_id())
        instructions, revised = self._revisable(described, node)
        proposer = model_judge(judge if judge is not None else self.backend.model)
        optimization_id = f"evalopt_{uuid.uuid4().hex[:12]}"
        best, best_instructions = base, instructions
        for n in range(1, rounds + 1):
            failed = failures(best)
            if not failed:
                break  # nothing left to fix
            proposal = self.runtime.call(propose(proposer, best_instructions, failed))
            planned = self.plan(data, graders, revised(proposal), f"{base.name} · round {n}", concurrency, "optimization", best.id)
            tried = self.finish_sync(planned, judge=judge, prices=prices, concurrency=concurrency, progress=progress)
            kept = improves(best, tried)
            self.runtime.call(self._round(optimization_id, n, best, tried, node, best_instructions, proposal, kept))
            if kept:
                best, best_instructions = tried, proposal
        self.runtime.flush()
        with self.runtime.db.cursor() as cur:
            frame = cur.execute(ROUNDS_SQL, [optimization_id]).df()
        return Optimization(optimization_id, frame, best, best_instructions)

    def _revisable(self, described: dict[str, Any], node: str | None) -> tuple[str, Callable[[str], runs.Target]]:
        """The instructions a run's target answered with, and how to make a target with others."""
        kind = described.get("kind")
        if kind == "workflow" or (kind == "lab" and self.runtime.server.workflow is not None):
            chat = self.chat_workflow(self._stored_workflow(described)) if kind == "workflow" else self.runtime.server.workflow
            assert chat is not None
            workflow = chat.resolved.workflow
            agents = [n for n in workflow.nodes if n.type == "agent"]
            if node is None:
                if len(agents) != 1:
                    raise ChatLabError(f"Say which agent node's instructions to revise: node= one of {', '.join(a.id for a in agents)}.")
                node = agents[0].id
            chosen = workflow.node(node)
            if chosen.type != "agent":
                raise ChatLabError(f"Node {node!r} is a {chosen.type} node; only an agent node's instructions are revised.")

            def with_node(text: str) -> runs.Target:
                nodes = [n.model_copy(update={"instructions": text}) if n.id == node else n for n in workflow.nodes]
                return self.target(workflow.model_copy(update={"nodes": nodes}).checked())

            return str(chosen.instructions), with_node
        if node is not None:
            raise ChatLabError("node= names a workflow's agent node; this run's target is an agent.")
        if kind == "overrides":
            given = dict(described["overrides"])
            if "tools" in given:
                raise ChatLabError("This run's tools are not stored (only their names): run the overrides with instructions= yourself.")
        elif kind == "lab":
            given = {}
        else:
            raise ChatLabError(f"A run of {described.get('label')} cannot be optimised: run the lab, overrides or a workflow.")
        current = given.get("instructions", self._agent().instructions)
        if not isinstance(current, str):
            raise ChatLabError("This agent's instructions are a function; optimise an overrides run ({'instructions': ...}) instead.")
        return current, lambda text: self.target({**given, "instructions": text})

    async def _round(self, optimization_id: str, n: int, before: EvalRun, after: EvalRun, node: str | None, old: str, new: str, kept: bool) -> None:
        async with self.runtime.db.transaction() as cur:
            cur.execute("INSERT INTO eval_rounds VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [
                optimization_id, n, before.id, after.id, node, self.runtime.redact(old), self.runtime.redact(new), before.pass_rate, after.pass_rate,
                before.mean_score, after.mean_score, kept, self.user_id(), utc_now()])


def _with_values(lab: ContextInjection | None, values: dict[str, Any] | None) -> ContextInjection:
    """The lab's context (strategy, values, providers) with ``values`` over its own."""
    context = ContextInjection(lab.strategy if lab else "instructions")
    context.values = {**(lab.values if lab else {}), **(values or {})}
    context.providers = list(lab.providers) if lab else []
    return context
