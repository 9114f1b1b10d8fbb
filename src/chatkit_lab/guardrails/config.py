"""Guardrail configs in openai-guardrails' JSON: the pipeline form and the bundle form.

The checks and their config keys are spelled as that library spells them, so a config written
for it (or embedded in an Agent Builder export) loads as is; a wrong one is a ``ChatLabError``
that says where it is wrong and how the right shape looks.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import ChatLabError
from . import library

STAGES = ("pre_flight", "input", "output")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LLMConfig(_Strict):
    # ``model`` is required by openai-guardrails; here it may be left out (the judge's own model).
    model: str | None = None
    confidence_threshold: float = Field(0.7, ge=0, le=1)
    max_turns: int = Field(10, ge=1)
    include_reasoning: bool = False


class PromptConfig(LLMConfig):
    system_prompt_details: str = Field(min_length=1)


class HallucinationConfig(LLMConfig):
    knowledge_source: str = Field(min_length=1)


MODERATION_CATEGORIES = (
    "sexual", "sexual/minors", "hate", "hate/threatening", "harassment", "harassment/threatening", "self-harm",
    "self-harm/intent", "self-harm/instructions", "violence", "violence/graphic", "illicit", "illicit/violent",
)


def _only(values: list[str], allowed: tuple[str, ...], what: str, hint: str) -> list[str]:
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; {hint} {', '.join(allowed)}")
    return values


class ModerationConfig(_Strict):
    categories: list[str] = Field(default_factory=lambda: list(MODERATION_CATEGORIES))

    @field_validator("categories")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        return _only(value, MODERATION_CATEGORIES, "categories", "choose from")


TRAILING_PUNCTUATION = re.compile(r"[.,!?;:]+$")


class KeywordConfig(_Strict):
    keywords: list[str] = Field(min_length=1)

    @field_validator("keywords")
    @classmethod
    def _not_empty(cls, value: list[str]) -> list[str]:
        if any(not TRAILING_PUNCTUATION.sub("", k).strip() for k in value):
            raise ValueError("a keyword is empty once trailing punctuation is removed")
        return value


class URLConfig(_Strict):
    url_allow_list: list[str] = Field(default_factory=list)
    allowed_schemes: frozenset[str] = frozenset({"https"})
    block_userinfo: bool = True
    allow_subdomains: bool = False

    @field_validator("allowed_schemes", mode="before")
    @classmethod
    def _bare(cls, value: Any) -> Any:
        # "https://", "HTTPS:" and " https " all mean https, as in openai-guardrails.
        if value is not None and not isinstance(value, str | list | tuple | set | frozenset):
            raise ValueError('give a list of schemes, e.g. ["https"]')
        values = [value] if isinstance(value, str) else list(value or ["https"])
        return frozenset(str(v).strip().lower().removesuffix("://").removesuffix(":") for v in values if str(v).strip())


class SecretKeysConfig(_Strict):
    threshold: Literal["strict", "balanced", "permissive"] = "balanced"
    custom_regex: list[str] | None = None

    @field_validator("custom_regex")
    @classmethod
    def _compiles(cls, value: list[str] | None) -> list[str] | None:
        for pattern in value or []:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"the pattern {pattern!r} is not a regular expression: {exc}") from None
        return value


PII_ENTITIES = (
    "CREDIT_CARD", "CRYPTO", "DATE_TIME", "EMAIL_ADDRESS", "IBAN_CODE", "IP_ADDRESS", "NRP", "LOCATION", "PERSON",
    "PHONE_NUMBER", "MEDICAL_LICENSE", "URL", "CVV", "BIC_SWIFT", "US_BANK_NUMBER", "US_DRIVER_LICENSE", "US_ITIN",
    "US_PASSPORT", "US_SSN", "UK_NHS", "UK_NINO", "ES_NIF", "ES_NIE", "IT_FISCAL_CODE", "IT_DRIVER_LICENSE",
    "IT_VAT_CODE", "IT_PASSPORT", "IT_IDENTITY_CARD", "PL_PESEL", "SG_NRIC_FIN", "SG_UEN", "AU_ABN", "AU_ACN",
    "AU_TFN", "AU_MEDICARE", "IN_PAN", "IN_AADHAAR", "IN_VEHICLE_REGISTRATION", "IN_VOTER", "IN_PASSPORT",
    "FI_PERSONAL_IDENTITY_CODE", "KR_RRN",
)


class PIIConfig(_Strict):
    entities: list[str] = Field(default_factory=lambda: list(PII_ENTITIES))
    block: bool = False
    detect_encoded_pii: bool = False

    @field_validator("entities")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        return _only(value, PII_ENTITIES, "entities", "the entity names are Presidio's:")


# Each check's config model, and an example of a right config (shown when one is wrong).
CHECKS: dict[str, tuple[type[BaseModel], dict[str, Any]]] = {
    "Contains PII": (PIIConfig, {"entities": ["EMAIL_ADDRESS", "PHONE_NUMBER"], "block": False}),
    "Jailbreak": (LLMConfig, {"model": "gpt-4.1-mini", "confidence_threshold": 0.7}),
    "Moderation": (ModerationConfig, {"categories": ["hate", "violence"]}),
    "URL Filter": (URLConfig, {"url_allow_list": ["example.com"], "allowed_schemes": ["https"]}),
    "Keyword Filter": (KeywordConfig, {"keywords": ["confidential"]}),
    "Competitors": (KeywordConfig, {"keywords": ["Acme Corp"]}),
    "Secret Keys": (SecretKeysConfig, {"threshold": "balanced"}),
    "Off Topic Prompts": (PromptConfig, {"model": "gpt-4.1-mini", "confidence_threshold": 0.7, "system_prompt_details": "A cooking assistant."}),
    "NSFW Text": (LLMConfig, {"model": "gpt-4.1-mini", "confidence_threshold": 0.7}),
    "Custom Prompt Check": (PromptConfig, {"model": "gpt-4.1-mini", "confidence_threshold": 0.7, "system_prompt_details": "Flag requests for medical advice."}),
    "Prompt Injection Detection": (LLMConfig, {"model": "gpt-4.1-mini", "confidence_threshold": 0.7}),
    "Hallucination Detection": (HallucinationConfig, {"model": "gpt-4.1-mini", "confidence_threshold": 0.7, "knowledge_source": "vs_abc123"}),
}

_SHAPE = (
    'The pipeline form is {"version": 1, "input": {"version": 1, "guardrails": [{"name": "Contains PII", '
    '"config": {"block": false}}]}} (stages pre_flight, input and output, at least one); the bundle form is '
    '{"version": 1, "guardrails": [...]}.'
)


class Check(_Strict):
    """One configured check: its name as openai-guardrails spells it, its typed config, and
    who runs it (``library``: openai-guardrails' configured check, when the config names it)."""

    name: str
    config: Any
    implementation: str = "native"
    library: Any = None


class Stage(_Strict):
    """The checks of one stage, in config order."""

    name: str
    checks: tuple[Check, ...]
    suppress_tripwire: bool = False


class Pipeline(_Strict):
    """The stages of a guardrails config that has at least one."""

    stages: dict[str, Stage]

    def stage(self, name: str) -> Stage | None:
        return self.stages.get(name)

    def checks(self) -> list[Check]:
        return [c for s in self.stages.values() for c in s.checks]


def load_config(config: Any) -> Pipeline:
    """A config in either form, given as a dict, a JSON string, or a path to a JSON file.

    A bundle (``{"guardrails": [...]}``, as Agent Builder embeds it) is the ``input`` stage.
    """
    if isinstance(config, Pipeline):
        return config
    data = _as_data(config)
    if not isinstance(data, dict):
        raise ChatLabError(f"Guardrails config: it should be a JSON object, not a {_json_kind(data)}. {_SHAPE}")
    if "guardrails" in data:
        _keys(data, {"version", "guardrails", "config"}, "the bundle")
        return Pipeline(stages={"input": _stage("input", data, "")})
    _keys(data, {"version", *STAGES}, "the pipeline")
    _version(data, "the pipeline")
    stages = {name: _stage(name, data[name], name + ".") for name in STAGES if data.get(name) is not None}
    if not stages:
        raise ChatLabError(f"Guardrails config: it has no stage. {_SHAPE}")
    return Pipeline(stages=stages)


def _as_data(config: Any) -> Any:
    if isinstance(config, Path) or (isinstance(config, str) and not config.lstrip().startswith(("{", "["))):
        path = Path(config).expanduser()
        if not path.is_file():
            raise ChatLabError(f"There is no guardrails config file {str(path)!r} (or give the config as a dict or a JSON string).")
        try:
            config = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ChatLabError(f"Cannot read the guardrails config {path.name}: {getattr(exc, 'strerror', None) or exc}.") from None
    if isinstance(config, str):
        try:
            return json.loads(config)
        except json.JSONDecodeError as exc:
            raise ChatLabError(f"Guardrails config: not valid JSON ({exc}).") from None
    return config


def _json_kind(data: Any) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}.get(type(data), type(data).__name__)


def _keys(data: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ChatLabError(f"Guardrails config: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} in {where}; "
                           f"it takes {', '.join(sorted(allowed))}. {_SHAPE}")


def _version(data: dict[str, Any], where: str) -> None:
    if data.get("version", 1) != 1:
        raise ChatLabError(f"Guardrails config: {where} has version {data['version']!r}; only version 1 exists.")


def _stage(name: str, data: Any, where: str) -> Stage:
    # ``where`` is the stage's path in the config ("input.", or "" for a bundle).
    label = f"stage {name!r}" if where else "the bundle"
    if not isinstance(data, dict):
        raise ChatLabError(f"Guardrails config: {label} is a {_json_kind(data)}, not an object. {_SHAPE}")
    _keys(data, {"version", "guardrails", "config"}, label)
    _version(data, label)
    options = data.get("config") or {}
    if not isinstance(options, dict) or set(options) - {"concurrency", "suppress_tripwire"}:
        raise ChatLabError(f"Guardrails config: {where}config takes concurrency and suppress_tripwire, not {options!r}.")
    listed = data.get("guardrails")
    if not isinstance(listed, list) or not listed:
        raise ChatLabError(f"Guardrails config: {label} has no guardrails; give a list of checks, e.g. [{{\"name\": \"Contains PII\", \"config\": {{}}}}]. {_SHAPE}")
    return Stage(name=name, checks=tuple(_check(entry, f"{where}guardrails[{i}]") for i, entry in enumerate(listed)),
                 suppress_tripwire=bool(options.get("suppress_tripwire", False)))


def _check(entry: Any, where: str) -> Check:
    if not isinstance(entry, dict) or "name" not in entry:
        raise ChatLabError(f'Guardrails config: {where} should be {{"name": ..., "config": {{...}}}}, not {json.dumps(entry, default=str)[:80]}.')
    _keys(entry, {"name", "config", "implementation"}, where)
    name = entry["name"]
    if name not in CHECKS:
        raise ChatLabError(f"Guardrails config: {where} names an unknown check {name!r}; the checks are: {', '.join(CHECKS)}.")
    implementation = entry.get("implementation", "native")
    if implementation not in library.IMPLEMENTATIONS:
        raise ChatLabError(f"Guardrails config: {where} ({name}) has the implementation {implementation!r}; "
                           f"it is one of {', '.join(map(repr, library.IMPLEMENTATIONS))} (native when left out).")
    if implementation == library.NAME:
        typed, configured = library.configured(name, entry.get("config") or {}, where)
        return Check(name=name, config=typed, implementation=implementation, library=configured)
    model, example = CHECKS[name]
    try:
        config = model.model_validate(entry.get("config") or {})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'config'}{_reason(e)}" for e in exc.errors())
        right = json.dumps({"name": name, "config": example})
        raise ChatLabError(f"Guardrails config: {where} ({name}): {problems}. For example: {right}") from None
    return Check(name=name, config=config)


def _reason(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        return " is not a key of this check"
    if error["type"] == "missing":
        return " is required"
    return ": " + str(error["msg"]).removeprefix("Value error, ")


# A sensible pipeline to start from: personal data masked on the way in and out, jailbreaks
# stopped (the offline detector unless a judge is configured), secrets kept out of replies.
DEFAULT_ENTITIES = ["EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "US_SSN", "US_ITIN", "IBAN_CODE", "IP_ADDRESS", "US_BANK_NUMBER", "CRYPTO"]
DEFAULT_CONFIG: dict[str, Any] = {
    "version": 1,
    "pre_flight": {"version": 1, "guardrails": [{"name": "Contains PII", "config": {"entities": DEFAULT_ENTITIES}}]},
    "input": {"version": 1, "guardrails": [{"name": "Jailbreak", "config": {"confidence_threshold": 0.7}}]},
    "output": {"version": 1, "guardrails": [{"name": "Contains PII", "config": {"entities": DEFAULT_ENTITIES}},
                                            {"name": "Secret Keys", "config": {"threshold": "balanced"}}]},
}
