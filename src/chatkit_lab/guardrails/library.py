"""A check run by openai-guardrails itself, when a config names that implementation.

``{"name": "URL Filter", "config": {...}, "implementation": "openai-guardrails"}`` runs the
library's own check function, from its registry, on the text chatkit-lab gives it; the verdict
becomes a ``CheckResult`` like a native one. Installed with ``pip install
"chatkit-lab[openai-guardrails]"``. The library's model checks call ``ctx.guardrail_llm``, an
``AsyncOpenAI`` client: the lab's when its provider is OpenAI. Its Contains PII loads Presidio
with a spaCy model, which cannot be installed offline: such a config is refused, with the
library's sentence.
"""

from __future__ import annotations

import types
from typing import Any

from pydantic import ValidationError

from ..errors import ChatLabError

NAME = "openai-guardrails"
IMPLEMENTATIONS = ("native", NAME)


def configured(name: str, config: dict[str, Any], where: str) -> tuple[Any, Any]:
    """(the library's typed config, its configured check) for check ``name``."""
    try:
        from guardrails import default_spec_registry
    except ImportError:
        raise ChatLabError(f'Guardrails config: {where} ({name}) names the implementation "{NAME}", which is not installed; '
                           f'pip install "chatkit-lab[openai-guardrails]", or leave "implementation" out for the native one.') from None
    try:
        spec = default_spec_registry.get(name)
    except KeyError:
        raise ChatLabError(f"Guardrails config: {where} ({name}): openai-guardrails has no check of that name.") from None
    try:
        typed = spec.config_schema.model_validate(config)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in exc.errors())
        raise ChatLabError(f"Guardrails config: {where} ({name}), as openai-guardrails reads it: {problems}.") from None
    except Exception as exc:  # the library's own sentence, e.g. the spaCy model its PII check loads with its config
        raise ChatLabError(f"Guardrails config: {where} ({name}): openai-guardrails cannot run it here: {str(exc).strip()} "
                           'Leave "implementation" out to use the native check.') from None
    return typed, spec.instantiate(config=typed)


async def run(check: Any, data: str, client: Any) -> tuple[bool, bool, dict[str, Any]]:
    """(tripped, execution failed, info) of the library's ``check`` on ``data``."""
    if check.definition.ctx_requirements.model_fields.get("guardrail_llm") and client is None:
        return False, True, {"error": f"{check.definition.name} as openai-guardrails runs it needs an OpenAI client: configure "
                                      "OPENAI_API_KEY, or pass Guardrails(moderation=AsyncOpenAI(...)), or use the native check."}
    try:
        result = await check.run(types.SimpleNamespace(guardrail_llm=client), data)
    except Exception as exc:  # a failing check is a verdict, as a failing judge is
        return False, True, {"error": str(exc).strip() or type(exc).__name__}
    info = dict(result.info)
    if result.execution_failed and "error" not in info:
        info["error"] = str(result.original_exception or "the check failed")
    return bool(result.tripwire_triggered), bool(result.execution_failed), info
