"""The ``python`` grader: the user's ``def grade(sample, item) -> float`` in a child process, as
OpenAI ran it: isolated interpreter, no network, memory and CPU capped, a wall-clock timeout.

Whatever goes wrong (a syntax error, an exception, a timeout, a result that is not a finite
number) is an errored result with score 0 and a sentence, never a failed run.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from dataclasses import dataclass
from typing import Any

TIMEOUT_S = 120.0  # OpenAI's limit: 2 minutes
MEMORY_BYTES = 2 << 30  # and 2 GB of memory

# Runs in the child: limits set, no sockets and no child processes (an audit hook refuses them
# where they are made, so urllib or a subprocess cannot get round it, and importing ssl still
# works), the source defined, grade(sample, item) called once. What the grader prints goes to
# stderr: stdout carries the result.
RUNNER = r"""
import json, math, resource, sys
request = json.loads(sys.stdin.read())
resource.setrlimit(resource.RLIMIT_AS, (request["memory"], request["memory"]))
resource.setrlimit(resource.RLIMIT_CPU, (int(request["cpu"]), int(request["cpu"]) + 1))
PROCESSES = {"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty"}
def _refuse(event, args):
    if event.startswith("socket."):
        raise OSError("the python grader has no network")
    if event in PROCESSES:
        raise PermissionError("the python grader cannot start processes")
sys.addaudithook(_refuse)
out, sys.stdout = sys.stdout, sys.stderr
def reply(**fields):
    out.write(json.dumps(fields))
try:
    scope = {"__name__": "grader"}
    exec(compile(request["source"], "<grader>", "exec"), scope)
    grade = scope.get("grade")
    if not callable(grade):
        reply(error="the source defines no grade(sample, item) function")
    elif grade.__code__.co_argcount != 2:
        reply(error=f"grade takes exactly two arguments (sample, item), not {grade.__code__.co_argcount}")
    else:
        value = grade(request["sample"], request["item"])
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            reply(error=f"grade returned {type(value).__name__}, not a float")
        elif not math.isfinite(value):
            reply(error=f"grade returned {value}, not a finite number")
        else:
            reply(score=float(value))
except MemoryError:
    reply(error=f"the python grader ran out of memory (its limit is {request['memory'] >> 30} GB)")
except BaseException as exc:  # the grader's own failure, reported as a sentence
    reply(error=f"{type(exc).__name__}: {exc}"[:500])
"""


@dataclass(frozen=True)
class Outcome:
    score: float | None
    error: str | None


async def run_grader(source: str, sample: dict[str, Any], item: dict[str, Any], *, limit_s: float = TIMEOUT_S) -> Outcome:
    """Run ``grade(sample, item)`` from ``source`` in a child process."""
    # The CPU cap is a second past the wall-clock timeout, so a busy loop ends by the timeout's sentence.
    request = json.dumps({"source": source, "sample": sample, "item": item, "memory": MEMORY_BYTES, "cpu": int(limit_s) + 1}, default=str)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-I", "-c", RUNNER, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={"PATH": ""},
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(request.encode()), limit_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return Outcome(None, f"the python grader did not finish within {limit_s:g} s")
    except BaseException:
        proc.kill()
        raise
    try:
        reply = json.loads(out.decode() or "{}")
    except ValueError:
        reply = {}
    if "score" in reply:
        return Outcome(float(reply["score"]), None)
    if reply.get("error"):
        return Outcome(None, str(reply["error"]))
    if proc.returncode in (-signal.SIGXCPU, -signal.SIGKILL, -signal.SIGSEGV):
        return Outcome(None, f"the python grader was stopped by {signal.Signals(-proc.returncode).name} (CPU or memory limit)")
    return Outcome(None, f"the python grader exited with code {proc.returncode} and no result")
