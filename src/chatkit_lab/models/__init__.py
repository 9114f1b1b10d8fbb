"""Which model answers: the offline mirror, OpenAI, any OpenAI-compatible server, or your own."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

from agents import ModelSettings
from agents.models.interface import Model

from ..errors import ChatLabError
from .mirror import MirrorModel

__all__ = ["SETTINGS", "Backend", "MirrorModel", "openai_client", "resolve_backend"]

# The Agents SDK's model settings: it drops any other key silently.
SETTINGS = tuple(f.name for f in dataclasses.fields(ModelSettings))

DEFAULT_OPENAI_MODEL = "gpt-4.1-mini"


@dataclass
class Backend:
    """The model an agent uses, and a sentence saying what it is (shown to the user)."""

    model: Model | str
    description: str
    kind: str  # "offline" | "openai" | "compatible" | "custom"
    settings: ModelSettings = field(default_factory=ModelSettings)
    base_url: str | None = None
    client: Any = None  # the AsyncOpenAI client of an endpoint given by base_url or api_key

    def model_named(self, name: str | None) -> Model | str:
        """The model a workflow node naming ``name`` runs on: offline (and with your own
        ``Model``) always this backend's model; with a provider, ``name`` on that provider."""
        if not name or self.kind in ("offline", "custom"):
            return self.model
        if self.client is None:
            return name  # OpenAI from the environment: the SDK resolves names itself
        from agents import OpenAIChatCompletionsModel, OpenAIResponsesModel

        if self.kind == "compatible":
            return OpenAIChatCompletionsModel(model=name, openai_client=self.client)
        return OpenAIResponsesModel(model=name, openai_client=self.client)

    def __str__(self) -> str:
        return self.description


OFFLINE = "offline"


def openai_client() -> Any:
    """An ``AsyncOpenAI`` from the environment (OPENAI_API_KEY): for OpenAI's own endpoints
    (moderation, embeddings) when the lab's provider is OpenAI."""
    from openai import AsyncOpenAI

    return AsyncOpenAI()


def resolve_backend(
    model: Model | str | None = None,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
) -> Backend:
    """Pick the backend: an SDK ``Model`` as given; ``"offline"`` for the offline model whatever
    the environment says (lessons pin it: the same transcript every run); ``base_url`` (or
    ``OPENAI_BASE_URL``) for an OpenAI-compatible server over Chat Completions;
    ``OPENAI_API_KEY`` for OpenAI; otherwise the deterministic offline ``MirrorModel``."""
    if model is not None and not isinstance(model, str | Model):
        raise ChatLabError(f"model= is a model name such as 'gpt-4.1-mini', 'offline' or an Agents SDK Model, not {type(model).__name__}.")
    if model == OFFLINE:
        return Backend(MirrorModel(), 'offline mirror model (deterministic; pinned by model="offline")', "offline")
    if isinstance(model, Model):
        kind = "offline" if isinstance(model, MirrorModel) else "custom"
        return Backend(model, f"{model!r}", kind)
    base_url = base_url or os.environ.get("OPENAI_BASE_URL")
    if base_url:
        return _compatible(model or os.environ.get("OPENAI_MODEL") or "default", base_url, api_key)
    if model or api_key or os.environ.get("OPENAI_API_KEY"):
        name = model or os.environ.get("OPENAI_MODEL") or DEFAULT_OPENAI_MODEL
        if api_key:
            return _compatible(name, "https://api.openai.com/v1", api_key, responses=True)
        return Backend(name, f"OpenAI Responses API, model {name}", "openai")
    return Backend(
        MirrorModel(),
        "offline mirror model (deterministic; set OPENAI_API_KEY or pass model=/base_url= for a real model)",
        "offline",
    )


def _compatible(name: str, base_url: str, api_key: str | None, responses: bool = False) -> Backend:
    from agents import OpenAIChatCompletionsModel, OpenAIResponsesModel
    from openai import AsyncOpenAI

    # Local servers (Ollama, vLLM, llama.cpp) accept any key; the client insists on one.
    client = AsyncOpenAI(base_url=base_url, api_key=api_key or os.environ.get("OPENAI_API_KEY") or "not-needed")
    if responses:
        return Backend(OpenAIResponsesModel(model=name, openai_client=client), f"OpenAI Responses API, model {name}", "openai", base_url=base_url,
                       client=client)
    model: Any = OpenAIChatCompletionsModel(model=name, openai_client=client)
    return Backend(
        model,
        f"OpenAI-compatible server {base_url} (Chat Completions, model {name})",
        "compatible",
        # The SDK asks for streamed usage only from api.openai.com; other servers need this.
        settings=ModelSettings(include_usage=True),
        base_url=base_url,
        client=client,
    )
