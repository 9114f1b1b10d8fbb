"""The deterministic checks besides PII: Keyword Filter, Competitors, URL Filter, Secret Keys,
with openai-guardrails' documented semantics and ``info`` keys."""

from __future__ import annotations

import bisect
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
def _keyword_pattern(keywords: tuple[str, ...], flags: int) -> re.Pattern[str]:
    # Word boundaries only where a keyword ends in a word character: "foo" is not in "food". Each
    # alternative starts with its first character (then looks behind it): the engine can skip ahead.
    parts = []
    for k in keywords:
        first = re.escape(k[:1])
        start = rf"(?<!\w{first})" if k[:1].isalnum() or k[:1] == "_" else ""
        end = r"(?!\w)" if k[-1:].isalnum() or k[-1:] == "_" else ""
        parts.append(first + start + re.escape(k[1:]) + end)
    return re.compile("|".join(parts), flags)


def keywords(text: str, config: KeywordConfig) -> tuple[bool, dict[str, Any]]:
    sanitized = [TRAILING_PUNCTUATION.sub("", k) for k in config.keywords]
    ordered = tuple(sorted(sanitized, key=len, reverse=True))
    lower = text.lower()
    if len(lower) == len(text):  # case-folding kept the offsets: search the folded text (fast)
        found = _keyword_pattern(tuple(k.lower() for k in ordered), 0).finditer(lower)
    else:
        found = _keyword_pattern(ordered, re.IGNORECASE).finditer(text)
    unique: dict[str, str] = {}
    for m in found:
        unique.setdefault(m.group(0).lower(), text[m.start() : m.end()])
    matched = list(unique.values())
    return bool(matched), {"matched": matched, "checked": list(config.keywords), "sanitized_keywords": sanitized}


# -- URL Filter ------------------------------------------------------------------------------
_HOSTLESS = {"data", "javascript", "vbscript", "mailto"}
# URLs are found from their anchors, which the regex engine finds fast: "://", a hostless
# scheme, a dot before a top-level domain, or an IPv4 address; each is then widened to the URL.
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*$")
_REST = re.compile(r"[^\s<>\"'`]*")
_HOSTLESS_START = re.compile(r"(?:d(?<![\w]d)ata|j(?<![\w]j)avascript|v(?<![\w]v)bscript|m(?<![\w]m)ailto):(?!//)")
_DOT_LABEL = re.compile(r"\.([a-z]{2,24})(?![\w-])")
_IPV4 = re.compile(r"[0-9](?<![\w.][0-9])[0-9]{0,2}(?:\.[0-9]{1,3}){3}(?![\w.])")
_TRAILING = ".,;:!?)]}'\""
# A bare "name.word" is a URL only when its last label is a top-level domain people link to;
# otherwise file names (report.pdf) and code (os.path) would all be URLs.
_TLDS = frozenset([
    "com", "org", "net", "edu", "gov", "io", "ai", "co", "app", "dev", "info", "biz", "me", "tv", "us", "uk", "de",
    "fr", "es", "it", "nl", "be", "ch", "at", "se", "no", "dk", "fi", "pl", "cz", "ru", "cn", "jp", "kr", "in", "br",
    "au", "ca", "mx", "ar", "za", "nz", "ie", "pt", "gr", "tr", "il", "sg", "hk", "tw", "eu", "xyz", "online",
    "site", "tech", "cloud", "page", "link", "news", "blog", "shop", "store",
])


_HOST = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-")


def detect_urls(text: str) -> list[str]:
    lower = text.lower() if len(text.lower()) == len(text) else text
    found: list[tuple[int, str]] = []
    starts: list[int] = []  # the found URLs' spans, sorted, so an anchor inside one is skipped
    ends: list[int] = []

    def inside(at: int) -> bool:  # within a URL found already
        i = bisect.bisect_right(starts, at)
        return bool(i) and at < ends[i - 1]

    def add(start: int, end: int) -> None:
        url = text[start:end].rstrip(_TRAILING)
        i = bisect.bisect_right(starts, start)
        if not url or (i and start < ends[i - 1]):
            return
        found.append((start, url))
        starts.insert(i, start)
        ends.insert(i, start + len(url))

    def rest(at: int) -> int:
        m = _REST.match(text, at)
        return m.end() if m else at

    at = text.find("://")
    while at != -1:
        scheme = _SCHEME.search(text, max(0, at - 32), at)
        if scheme:
            add(scheme.start(), rest(at + 3))
        at = text.find("://", at + 3)
    if ":" in text:
        for m in _HOSTLESS_START.finditer(lower):
            add(m.start(), rest(m.end()))
    for m in _DOT_LABEL.finditer(lower):
        if m.group(1) not in _TLDS or inside(m.start()):  # most are the host of a URL with a scheme
            continue
        start = m.start()
        while start > 0 and lower[start - 1] in _HOST:
            start -= 1
        while start < m.start() and not lower[start].isalnum():
            start += 1
        if start == m.start() or (start and lower[start - 1] in "@_"):  # no name, or an e-mail's domain
            continue
        add(start, rest(m.end()) if text[m.end() : m.end() + 1] in ("/", ":") else m.end())
    for m in _IPV4.finditer(text):
        if inside(m.start()):
            continue
        add(m.start(), rest(m.end()) if text[m.end() : m.end() + 1] in ("/", ":") else m.end())
    return list(dict.fromkeys(url for _, url in sorted(found)))


def _port(parsed: ParseResult) -> int | None:
    try:
        return parsed.port or {"http": 80, "https": 443}.get(parsed.scheme.lower())
    except ValueError:
        return None


@lru_cache(maxsize=1024)
def _entry(entry: str) -> tuple[bool, ParseResult]:
    """An allow-list entry, parsed once: whether it names a scheme, and its parts."""
    entry = entry.strip()
    explicit = bool(re.match(r"^[a-z][a-z0-9+.-]*://", entry, re.I))
    return explicit, urlparse(entry if explicit else f"//{entry}")


def _allowed(parsed: ParseResult, config: URLConfig, explicit: bool) -> bool:
    host = (parsed.hostname or "").lower()
    if not host or (_port(parsed) is None and parsed.netloc.count(":") == 1):
        return False
    try:
        url_ip = ip_address(host)
    except ValueError:
        url_ip = None
    for entry in config.url_allow_list:
        entry_explicit, allowed = _entry(entry)
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
