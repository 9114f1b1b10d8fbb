"""The deterministic checks besides PII: Keyword Filter, Competitors, URL Filter, Secret Keys,
with openai-guardrails' documented semantics and ``info`` keys."""

from __future__ import annotations

import math
import re
from collections import Counter
from functools import lru_cache
from ipaddress import ip_address, ip_network
from typing import Any
from urllib.parse import ParseResult, urlparse

from .config import TRAILING_PUNCTUATION, KeywordConfig, SecretKeysConfig, URLConfig


# -- Keyword Filter, Competitors -----------------------------------------------------------
@lru_cache(maxsize=256)
def _keyword_pattern(keywords: tuple[str, ...]) -> re.Pattern[str]:
    # Word boundaries only where a keyword ends in a word character: "foo" is not in "food".
    parts = []
    for k in keywords:
        start = r"(?<!\w)" if k[:1].isalnum() or k[:1] == "_" else ""
        end = r"(?!\w)" if k[-1:].isalnum() or k[-1:] == "_" else ""
        parts.append(start + re.escape(k) + end)
    return re.compile("|".join(parts), re.IGNORECASE)


def keywords(text: str, config: KeywordConfig) -> tuple[bool, dict[str, Any]]:
    sanitized = [TRAILING_PUNCTUATION.sub("", k) for k in config.keywords]
    pattern = _keyword_pattern(tuple(sorted(sanitized, key=len, reverse=True)))
    unique: dict[str, str] = {}
    for m in pattern.finditer(text):
        unique.setdefault(m.group(0).lower(), m.group(0))
    matched = list(unique.values())
    return bool(matched), {"matched": matched, "checked": list(config.keywords), "sanitized_keywords": sanitized}


# -- URL Filter ------------------------------------------------------------------------------
_HOSTLESS = {"data", "javascript", "vbscript", "mailto"}
_URL = re.compile(
    r"(?i)(?:\b(?:[a-z][a-z0-9+.-]*://|(?:data|javascript|vbscript|mailto):)[^\s<>\"'`]+"
    r"|(?<![\w@.-])(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,24}(?::\d+)?(?:/[^\s<>\"'`]*)?(?![\w@-])"
    r"|(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?(?:/[^\s<>\"'`]*)?(?![\w.]))"
)
_TRAILING = ".,;:!?)]}'\""
# A bare "name.word" is a URL only when its last label is a top-level domain people link to;
# otherwise file names (report.pdf) and code (os.path) would all be URLs.
_TLDS = frozenset(
    ["com", "org", "net", "edu", "gov", "io", "ai", "co", "app", "dev", "info", "biz", "me", "tv", "us", "uk", "de", "fr", "es", "it", "nl", "be", "ch", "at", "se", "no", "dk", "fi", "pl", "cz", "ru", "cn", "jp", "kr", "in", "br", "au", "ca", "mx", "ar", "za", "nz", "ie", "pt", "gr", "tr", "il", "sg", "hk", "tw", "eu", "xyz", "online", "site", "tech", "cloud", "page", "link", "news", "blog", "shop", "store"]
)


def _bare_is_url(candidate: str) -> bool:
    host = candidate.split("/", 1)[0].split(":", 1)[0]
    return host.rsplit(".", 1)[-1].lower() in _TLDS or host.replace(".", "").isdigit()


def detect_urls(text: str) -> list[str]:
    found = []
    for m in _URL.finditer(text):
        url = m.group(0).rstrip(_TRAILING)
        explicit = "://" in url or url.split(":", 1)[0].lower() in _HOSTLESS
        if url and (explicit or _bare_is_url(url)):
            found.append(url)
    return list(dict.fromkeys(found))


def _port(parsed: ParseResult) -> int | None:
    try:
        return parsed.port or {"http": 80, "https": 443}.get(parsed.scheme.lower())
    except ValueError:
        return None


def _allowed(parsed: ParseResult, config: URLConfig, explicit: bool) -> bool:
    host = (parsed.hostname or "").lower()
    if not host or (_port(parsed) is None and parsed.netloc.count(":") == 1):
        return False
    try:
        url_ip = ip_address(host)
    except ValueError:
        url_ip = None
    for entry in (e.strip() for e in config.url_allow_list):
        entry_explicit = bool(re.match(r"^[a-z][a-z0-9+.-]*://", entry, re.I))
        allowed = urlparse(entry if entry_explicit else f"//{entry}")
        allowed_host = (allowed.hostname or "").lower()
        if entry_explicit and explicit and allowed.scheme.lower() != parsed.scheme.lower():
            continue
        try:
            explicit_port = allowed.port
        except ValueError:
            continue
        if explicit_port is not None and explicit_port != _port(parsed):
            continue
        try:
            allowed_ip = ip_address(allowed_host)
        except ValueError:
            allowed_ip = None
        if allowed_ip is not None or (url_ip is not None and "/" in entry):
            if url_ip is None:
                continue
            try:
                network = ip_network(f"{allowed_host}{allowed.path if allowed.path not in ('', '/') else ''}", strict=False)
            except ValueError:
                continue
            if url_ip in network:
                return True
            continue
        domain, want = host.removeprefix("www."), allowed_host.removeprefix("www.")
        if not want or not (domain == want or (config.allow_subdomains and domain.endswith("." + want))):
            continue
        path = allowed.path.rstrip("/")
        if path and not (parsed.path == allowed.path or parsed.path == path or parsed.path.startswith(path + "/")):
            continue
        if allowed.query and allowed.query != parsed.query:
            continue
        return True
    return False


def url_filter(text: str, config: URLConfig) -> tuple[bool, dict[str, Any]]:
    detected, allowed, blocked, reasons = detect_urls(text), [], [], []
    for url in detected:
        explicit = "://" in url or url.split(":", 1)[0].lower() in _HOSTLESS
        try:
            parsed = urlparse(url if explicit else f"http://{url}")
        except ValueError as exc:
            blocked.append(url)
            reasons.append(f"{url}: Invalid URL format: {exc}")
            continue
        scheme = parsed.scheme.lower()
        if explicit and scheme not in config.allowed_schemes:
            reason = f"Blocked scheme: {scheme}"
        elif config.block_userinfo and (parsed.username or parsed.password):
            reason = "Contains userinfo (potential credential injection)"
        elif scheme in _HOSTLESS or _allowed(parsed, config, explicit):
            allowed.append(url)
            continue
        else:
            reason = "Not in allow list"
        blocked.append(url)
        reasons.append(f"{url}: {reason}")
    info = {"detected": detected, "allowed": allowed, "blocked": blocked, "blocked_reasons": reasons,
            "config": {"allowed_schemes": sorted(config.allowed_schemes), "block_userinfo": config.block_userinfo,
                       "allow_subdomains": config.allow_subdomains, "url_allow_list": list(config.url_allow_list)}}
    return bool(blocked), info


# -- Secret Keys -------------------------------------------------------------------------------
PRESETS = {  # min_length, min_entropy, min_diversity, strict_mode (openai-guardrails' presets)
    "strict": (10, 3.5, 2, True), "balanced": (15, 3.8, 3, False), "permissive": (20, 4.0, 3, False),
}
KEY_PREFIXES = ("key-", "sk-", "sk_", "pk_", "pk-", "ghp_", "AKIA", "xox", "SG.", "hf_", "api-", "apikey-", "token-", "secret-", "SHA:")
_EXTENSIONS = re.compile(
    r"\S+\.(?:py|js|html|css|json|md|txt|csv|xml|ya?ml|ini|conf|config|log|sql|sh|bat|dll|so|dylib|jar|war|php|rb|go|rs|ts|jsx|"
    r"vue|cpp|c|h|cs|fs|vb|docx?|xlsx?|pptx?|pdf|jpe?g|png)$", re.IGNORECASE)
_TOKEN = re.compile(r"\S{10,}")


def entropy(s: str) -> float:
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values())


def _diversity(s: str) -> int:
    return sum((any(c.islower() for c in s), any(c.isupper() for c in s), any(c.isdigit() for c in s), any(not c.isalnum() for c in s)))


def secret_keys(text: str, config: SecretKeysConfig) -> tuple[bool, dict[str, Any]]:
    min_length, min_entropy, min_diversity, strict = PRESETS[config.threshold]
    custom = [re.compile(p) for p in config.custom_regex or []]
    found = [m.group(0) for pattern in custom for m in pattern.finditer(text)]
    for m in _TOKEN.finditer(text):
        token = m.group(0).strip(".,;:!?()[]{}<>\"'`")
        if len(token) < min_length or token in found:
            continue
        if not strict and (re.search(r"https?://", token, re.I) or _EXTENSIONS.match(token)):
            continue
        if _diversity(token) < min_diversity:
            continue
        if token.startswith(KEY_PREFIXES) or entropy(token) >= min_entropy:
            found.append(token)
    return bool(found), {"detected_secrets": found}
