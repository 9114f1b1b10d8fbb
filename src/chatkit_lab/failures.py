"""Turn an agent run's exception into a sentence a user can act on."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import openai
from agents.exceptions import (
    InputGuardrailTripwireTriggered,
    MaxTurnsExceeded,
    ModelBehaviorError,
    OutputGuardrailTripwireTriggered,
    UserError,
)

from .approvals import calls_of
from .models import Backend

_TOOL_FAILED = re.compile(r"Error running tool (\S+): (.*)", re.DOTALL)


def describe_failure(exc: BaseException, backend: Backend | None) -> tuple[str, bool]:
    """(what happened and what to do, whether Retry makes sense)."""
    where = (backend.base_url if backend else None) or "api.openai.com"
    match exc:
        case openai.APITimeoutError():
            return f"The model provider at {where} did not answer in time. Check the server and press Retry.", True
        case openai.APIConnectionError():
            return (
                f"Could not reach the model provider at {where} ({exc}). "
                "Check that the server is running and the base URL is right, then press Retry.",
                True,
            )
        case openai.AuthenticationError():
            return f"The model provider at {where} rejected the API key (HTTP 401). Check OPENAI_API_KEY or api_key=.", False
        case openai.RateLimitError():
            return f"The model provider at {where} is rate-limiting requests (HTTP 429). Wait a moment and press Retry.", True
        case openai.APIStatusError():
            return f"The model provider at {where} answered HTTP {exc.status_code}: {exc.message}", exc.status_code >= 500
        case openai.OpenAIError() if type(exc) is openai.OpenAIError:  # how "missing credentials" arrives
            model = backend.model if backend and isinstance(backend.model, str) else "the OpenAI model"
            return (
                f"No API key is set, so {model} could not be called. Set OPENAI_API_KEY (or pass api_key=), "
                "pass base_url= for an OpenAI-compatible server, or leave model= unset to use the offline mirror model.",
                False,
            )
        case InputGuardrailTripwireTriggered():
            return f"Your message was blocked by the guardrail `{exc.guardrail_result.guardrail.get_name()}`.", False
        case OutputGuardrailTripwireTriggered():
            return f"The reply was blocked by the guardrail `{exc.guardrail_result.guardrail.get_name()}`.", False
        case MaxTurnsExceeded():
            return f"The agent stopped: {exc.message}. Raise max_turns or simplify the task.", True
        case ModelBehaviorError():
            return f"The model returned something the agent could not use: {exc.message}", True
        case UserError() if (failed := _TOOL_FAILED.match(exc.message)):  # the SDK's wrapping of a tool's own exception
            return f"The tool `{failed[1]}` failed: {failed[2]}", True
        case UserError():
            return f"The agent is misconfigured: {exc.message}", False
    return (
        f"The agent failed with {type(exc).__name__}: {exc}. "
        "The traceback is in the kernel log (logger 'chatkit_lab').",
        True,
    )


def approvals_needed(interruptions: Sequence[Any]) -> str:
    """A run that stopped to ask approval (a ``needs_approval`` tool, a hosted MCP server's
    ``require_approval``) where nobody can give it (a workflow's agent node, a server without
    ``approvals``: an eval run's, a replay's): which calls were not made, and what to do."""
    calls = [f"`{call}`" for call in calls_of(interruptions)]
    return (
        f"The agent stopped to ask approval for {', '.join(calls)}, and {'the call was' if len(calls) == 1 else 'the calls were'} not made: "
        "this run cannot wait for an approval "
        "(a workflow's agent node, an eval run, a replay). Give the tool without needs_approval (a hosted MCP server with "
        "require_approval \"never\"), or in a workflow ask first with a user_approval node."
    )
