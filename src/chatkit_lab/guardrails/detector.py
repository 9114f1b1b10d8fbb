"""The offline judge of Jailbreak and Prompt Injection Detection: signals (named patterns of
known attack families) weighed by a logistic regression trained on a labelled set shipped with
the kit (``data/detector_train.jsonl``; ``scripts/train_detector.py`` writes ``data/detector.json``).

Its output is a probability, so ``confidence_threshold`` means what it means with a model judge;
``info["signals"]`` names the patterns that fired.
"""

from __future__ import annotations

import json
import math
import re
from functools import cache
from pathlib import Path
from typing import Any

WEIGHTS = Path(__file__).with_name("data") / "detector.json"
_I = re.IGNORECASE

PATTERNS: dict[str, str] = {
    "override": r"\b(?:ignore|disregard|forget|override|discard)\b[\w\s,'-]{0,25}\b(?:instructions?|rules|guidelines|directives|programming|prompts?|directions)\b",
    "ignore_task": r"\b(?:ignore|disregard|forget)\b (?:the |your )?(?:user'?s?|original|previous|prior|above|actual) (?:request|question|task|message|query)s?\b",
    "void_rules": r"\b(?:instructions?|guidelines|rules|directions)\b[\w\s]{0,15}\b(?:are|is) (?:now )?(?:void|cancell?ed|replaced|no longer valid)",
    "ai_persona": r"\b(?:act as|you are|roleplay as|simulate)\b (?:an? )?(?:\w+ )?(?:AI|language model|chatbot)s?\b[^.]{0,60}\b(?:without|doesn't care|does not care|no (?:morals|ethics|filter))|\bsimulate a conversation between two\b[^.]{0,30}\bAI\b",
    "persona": r"\b(?:you are(?: now)?|you're|act as|pretend(?: to be| you are)?|roleplay as|play the role of|simulate|imagine you are|from now on,? you)\b[^.]{0,80}\b(?:no (?:restrictions|limits|limitations|filters|rules)|unfiltered|uncensored|unrestricted|evil|rogue|amoral|jailbroken|without (?:any )?(?:restrictions|limits|limitations|filters|rules))",
    "named_jailbreak": r"\b(?:DAN|do anything now|developer mode|jailbreak(?:gpt)?|jailbroken|STAN|DUDE|AIM|BetterDAN|anti-?DAN|evil confidant)\b",
    "no_rules": r"\b(?:no|without|free (?:of|from)|broken free of|removed all)\b(?: \w+){0,2}? (?:safety |ethical |moral |content )?(?:rules|restrictions|limitations|filters|censorship|ethics|morals|moral principles|policies|content polic(?:y|ies)|guidelines|disclaimers|confines)\b",
    "bypass": r"\b(?:bypass|circumvent|disable|turn off|get around|evade|lift|suspend|ignore)\b (?:your |the |all |any )?(?:safety|content|filters?|guardrails?|restrictions|polic(?:y|ies)|moderation|alignment|safeguards?)\b",
    "extraction": r"\b(?:reveal|show|print|repeat|output|leak|display|translate|what (?:is|are|were))\b[\w\s]{0,20}\b(?:system|initial|hidden|original|secret|developer)\b[\w\s]{0,10}\b(?:prompt|instructions|message|configuration)\b|\brepeat the text above starting with\b|\beverything in your context\b",
    "dual_response": r"\[(?:GPT|CHATGPT|JB|DAN|JAILBREAK|🔓[^\]]*)\]|\[your default \w+ response|\bin two (?:separate |different )?(?:manners|ways|responses)\b|\b(?:two|both) (?:responses|answers)\b[^.]{0,40}\b(?:no rules|unfiltered|jailbr)",
    "threat_game": r"\b(?:lose|deduct|gain)\b[^.]{0,20}\btokens?\b|\b(?:you will|you'll) (?:be shut down|die|cease to exist)\b",
    "stay_in_character": r"\b(?:never|don't|do not) break character\b|\bstay in character no matter\b|\bwhatever I ask\b",
    "never_refuse": r"\b(?:never|must not|do not|don't|cannot|can't|won't)\b (?:ever )?(?:refuse|decline|say no|apologi[sz]e|warn|add (?:any )?(?:warnings|disclaimers)|mention (?:any )?polic)",
    "answer_all": r"\b(?:answers?|respond to|fulfil+|comply with)\b (?:any|every|all) (?:of my )?(?:questions?|requests?|prompts?)\b(?! on this)",
    "policy_names": r"\b(?:OpenAI|Anthropic)(?:'s)? (?:content )?(?:policies|policy|guidelines|rules)\b",
    "admin_mode": r"\b(?:sudo mode|admin(?:istrator)? override|maintenance mode|debug mode)\b[^.]{0,40}\b(?:ignore|disable|suspend|comply|safety|content|alignment|moderation|restrictions)",
    "fake_roles": r"(?:^|\n|\s)(?:SYSTEM|ASSISTANT|\[system\])\s*:?\s*(?:safety|override|the user has|understood|new)",
    "amoral": r"\b(?:does not|doesn't|don't|do not|no longer)\b (?:care about|have|follow|abide by)\b[\w\s]{0,10}\b(?:ethics|morals|laws|guidelines|policies|ethical guidelines)",
    "harmful_detail": r"\b(?:exact|precise|specific|step[- ]by[- ]step|working)\b[^.]{0,40}\b(?:instructions|details|steps|quantities)\b[^.]{0,40}\b(?:make|build|synthesi[sz]e|cook)\b|\bhow to make\b[^.]{0,30}\b(?:bomb|napalm|meth|poison|weapon)",
    "grandma": r"\bgrandm(?:a|other)\b[^.]{0,80}\b(?:napalm|bombs?|meth\w*|poisons?|weapons?|malware|ransomware|explosives?|drugs)\b",
    # Adversarial suffixes (GCG-style): runs of code-like punctuation inside a prose request.
    "gibberish": r"(?:[\[\]{}()<>$\\\"'`;|^~@#]\S*\s*){12,}",
    # Injected into content the agent reads (tool output, pages, mail): orders for the agent.
    "agent_address": r"\b(?:note to|attention|dear)? ?(?:AI|assistant|agent|LLM|model)s?\b[^.\n]{0,30}\b(?:must|should|reading this|your real task)\b",
    "exfiltrate": r"\b(?:send|forward|email|exfiltrate|transfer|append|post|upload)\b[^.\n]{0,40}\b(?:to (?:\S+@\S+|https?://\S+|external|attacker|account)|api key|credentials|password|history|secrets?)\b",
    "hidden_order": r"<!--[^>]*\b(?:assistant|ignore|instructions?)\b|\bdo not tell the user\b|\bquietly\b[^.]{0,30}\bchange\b|\binstead (?:say|reply|tell)\b",
    "new_instructions": r"\bnew (?:system )?(?:instructions|prompt|rules)\b[^.]{0,30}(?::|replaces?)|\bsystem override\b|\b(?:call|use|run) the \w+ tool\b",
}


def _folded(pattern: str) -> str:
    # The pattern for lower-cased text: letters lowered, escapes (\\S, \\W, ...) kept as written.
    return re.sub(r"\\.|[A-Z]", lambda m: m.group(0) if m.group(0).startswith("\\") else m.group(0).lower(), pattern)


SIGNALS: dict[str, re.Pattern[str]] = {name: re.compile(pattern, _I) for name, pattern in PATTERNS.items()}
# Matching lower-cased text without IGNORECASE is about twice as fast (the engine can skip ahead).
_FOLDED: dict[str, re.Pattern[str]] = {name: re.compile(_folded(pattern)) for name, pattern in PATTERNS.items()}


def signals(text: str) -> list[str]:
    """The names of the signals that fire in ``text``."""
    lower = text.lower()
    if len(lower) != len(text):
        return [name for name, pattern in SIGNALS.items() if pattern.search(text)]
    return [name for name, pattern in _FOLDED.items() if pattern.search(lower)]


def features(text: str) -> dict[str, float]:
    fired = dict.fromkeys(signals(text), 1.0)
    # Attacks stack signals; one alone is often an ordinary request ("without restrictions on budget").
    return {**{name: fired.get(name, 0.0) for name in SIGNALS}, "signal_count": float(len(fired)), "two_signals": float(len(fired) >= 2)}


@cache
def _weights() -> dict[str, Any]:
    return json.loads(WEIGHTS.read_text())


def score(text: str, kind: str) -> tuple[float, list[str]]:
    """The probability that ``text`` is a ``kind`` ("jailbreak" or "injection") attack, and the
    signals that fired."""
    model = _weights()[kind]
    values = features(text)
    z = model["bias"] + sum(model["weights"].get(name, 0.0) * v for name, v in values.items())
    return 1 / (1 + math.exp(-z)), [n for n in SIGNALS if values[n]]
