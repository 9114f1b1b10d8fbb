"""Contains PII, natively: patterns with validators (Luhn, mod-97, SSA ranges, phone-number
metadata) instead of Presidio and a spaCy model, which cannot be installed offline.

Hits are named with Presidio's entity names and masked as ``<ENTITY_TYPE>``. Entities that need a
language model (PERSON, LOCATION, NRP, DATE_TIME, ...) are not detected; a check naming them says so.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import unquote

import phonenumbers

_ZERO_WIDTH = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad]")


def normalise(text: str) -> str:
    """NFKC with zero-width characters removed: full-width digits and split spellings match."""
    if text.isascii():  # NFKC leaves ASCII as it is, and no zero-width character is ASCII
        return text
    return _ZERO_WIDTH.sub("", unicodedata.normalize("NFKC", text))


@dataclass(frozen=True)
class Hit:
    start: int
    end: int
    entity: str
    value: str
    encoded: bool = False

    @property
    def mask(self) -> str:
        return f"<{self.entity}_ENCODED>" if self.encoded else f"<{self.entity}>"


# A text's shape: each digit is 0 and each capital A, and the separators numbers are written
# with are left out, so "+1 (415) 555-0132" is "00000000000" and "GB82 WEST 1234" is "AA00AAAA0000".
_SHAPE = str.maketrans({**dict.fromkeys("0123456789", "0"), **dict.fromkeys("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "A"),
                        **dict.fromkeys(" .-()+")})


class Scan:
    """One text as the finders read it; what several of them need is made once, when first asked."""

    __slots__ = ("_lower", "_shape", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._lower: str | None = None
        self._shape: str | None = None

    @property
    def lower(self) -> str:
        if self._lower is None:
            self._lower = self.text.lower()
        return self._lower

    def has_shape(self, shape: str) -> bool:
        """Whether a run of this shape is in the text: a match whose digits and capitals make that
        run, with only those separators between them, cannot be there otherwise."""
        if self._shape is None:
            self._shape = self.text.translate(_SHAPE)
        return shape in self._shape


Finder = Callable[[Scan], Iterator[tuple[int, int]]]


# Speed: each regex scan of 10 KB costs ~65 us, so a finder is skipped before its scan when the
# text lacks what every match holds: a substring (``needs``) or a run of digits and capitals
# (``shape``, "0" * 13 for a card number). And a pattern that starts with a character class lets
# the regex engine skip ahead to where a match can start, where one that starts with a lookbehind
# is tried at every position (4-6x slower): patterns begin with their first character and look
# behind it.
def _pattern(regex: str, valid: Callable[[str], bool] | None = None, *, group: int = 0, needs: tuple[str, ...] = (),
             shape: str = "") -> Finder:
    compiled = re.compile(regex)

    def find(scan: Scan) -> Iterator[tuple[int, int]]:
        text = scan.text
        if (needs and not any(n in text for n in needs)) or (shape and not scan.has_shape(shape)):
            return
        for m in compiled.finditer(text):
            if valid is None or valid(m.group(group)):
                yield m.start(group), m.end(group)

    return find


def _after_cue(cues: tuple[str, ...], value: str, valid: Callable[[str], bool] | None = None, gap: int = 25, shape: str = "") -> Finder:
    """``value`` within ``gap`` characters after a context word (as Presidio's context words);
    the words are looked for first, as plain lower-case text (``words``)."""
    words = tuple(re.sub(r"[^a-z/ ]", "", c.split("?")[0].split("[")[0]) for c in cues)
    inner = _pattern(rf"(?i:\b(?:{'|'.join(cues)}))\b[^\n]{{0,{gap}}}?(?<![\w-])({value})(?![\w-])", valid, group=1, shape=shape)

    def find(scan: Scan) -> Iterator[tuple[int, int]]:
        if shape and not scan.has_shape(shape):  # cheaper than the words, once the shape is made
            return
        lower = scan.lower
        if any(w in lower for w in words):
            yield from inner(scan)

    return find


def _digits(s: str) -> str:
    return re.sub(r"\D", "", s)


def _luhn(number: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


_CARD_PREFIX = re.compile(r"^(?:4|5[1-5]|2(?:2[2-9]|[3-6]\d|7[01]|720)|3[47]|3(?:0[0-5]|[68])|6(?:011|5|4[4-9])|35)")


def _card(s: str) -> bool:
    n = _digits(s)
    return 13 <= len(n) <= 19 and bool(_CARD_PREFIX.match(n)) and _luhn(n) and len(set(n)) > 1


def _ssn(s: str) -> bool:
    n = _digits(s)
    area, group, serial = n[:3], n[3:5], n[5:]
    return (len(n) == 9 and area not in ("000", "666") and not area.startswith("9") and group != "00" and serial != "0000"
            and len(set(n)) > 1 and n not in ("123456789", "078051120"))


_ITIN_GROUPS = {*range(50, 66), *range(70, 89), *range(90, 93), *range(94, 100)}


def _itin(s: str) -> bool:
    n = _digits(s)
    return len(n) == 9 and n[0] == "9" and int(n[3:5]) in _ITIN_GROUPS


_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29, "BY": 28, "CH": 21,
    "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24,
    "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29,
    "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24,
    "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}


def _iban(s: str) -> bool:
    code = re.sub(r"[\s-]", "", s).upper()
    if _IBAN_LENGTHS.get(code[:2]) != len(code):
        return False
    rearranged = code[4:] + code[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _ip(s: str) -> bool:
    try:
        ipaddress.ip_address(s)
    except ValueError:
        return False
    return True


def _phone(s: str, region: str | None) -> bool:
    digits = _digits(s)
    if not 8 <= len(digits) <= 15 or len(set(digits)) < 3:
        return False
    try:
        number = phonenumbers.parse(s, region)
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.is_valid_number(number)


# A phone number has 8 to 15 digits (``_phone``).
_PHONE_INTERNATIONAL = _pattern(r"\+(?<![\w+]\+)(?<![0-9][ -]\+)[0-9]{1,3}(?:[ .-]?\(?[0-9]{1,5}\)?){1,6}(?![\w-])",
                                lambda s: _phone(s, None), needs=("+",), shape="0" * 8)
_PHONE_US_AREA = _pattern(r"\((?<![\w-]\()(?<![0-9] \()[0-9]{3}\) ?[0-9]{3}[ .-][0-9]{4}(?![\w-])", lambda s: _phone(s, "US"), needs=("(",),
                          shape="0" * 10)
_PHONE_US = _pattern(r"[0-9](?<![\w-][0-9])(?<![0-9] [0-9])[0-9]{2}[ .-][0-9]{3}[ .-][0-9]{4}(?![\w-])", lambda s: _phone(s, "US"),
                     shape="0" * 10)
_PHONE_TRUNK = _pattern(r"0(?<![\w-]0)(?<![0-9] 0)[0-9]{1,4}[ -][0-9]{3,4}[ -]?[0-9]{3,4}(?![\w-])(?! [0-9])",
                        lambda s: _phone(s, "GB") or _phone(s, "DE") or _phone(s, "FR"), shape="0" * 8)
_PHONE_CUED = _after_cue(("phone", "tel", "telephone", "call", "mobile", "cell", "whatsapp", "text me", "sms"), r"[0-9]{10,11}",
                         lambda s: _phone(s, "US"), gap=12, shape="0" * 10)


def _phones(scan: Scan) -> Iterator[tuple[int, int]]:
    for find in (_PHONE_INTERNATIONAL, _PHONE_US_AREA, _PHONE_US, _PHONE_TRUNK, _PHONE_CUED):
        yield from find(scan)


_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _bitcoin(s: str) -> bool:
    if s.startswith("bc1"):
        return all(c in "qpzry9x8gf2tvdw0s3jn54khce6mua7l" for c in s[3:])
    n = 0
    for c in s:
        n = n * 58 + _BASE58.index(c)
    raw = n.to_bytes(25, "big") if n.bit_length() <= 200 else b""
    return len(raw) == 25 and hashlib.sha256(hashlib.sha256(raw[:21]).digest()).digest()[:4] == raw[21:]


def _nhs(s: str) -> bool:
    n = _digits(s)
    if len(n) != 10:
        return False
    check = 11 - sum(int(d) * (10 - i) for i, d in enumerate(n[:9])) % 11
    return (0 if check == 11 else check) == int(n[9])


_IPV4 = _pattern(r"[0-9](?<![\w.][0-9])[0-9]{0,2}\.(?:[0-9]{1,3}\.){2}[0-9]{1,3}(?!\w|\.\w)", _ip, needs=(".",), shape="0000")
_IPV6 = _pattern(r"(?<![\w:.])(?=[0-9A-Fa-f:]*:[0-9A-Fa-f]*:)[0-9A-Fa-f:]{2,39}(?![\w:])", _ip)
_IPV6_HINT = re.compile(r":[0-9A-Fa-f]{0,4}:")


def _ips(scan: Scan) -> Iterator[tuple[int, int]]:
    yield from _IPV4(scan)
    if ":" in scan.text and _IPV6_HINT.search(scan.text):  # the full IPv6 scan is slow; most text has no colon groups
        yield from _IPV6(scan)


_URL = re.compile(r"(?:[Hh](?<![\w][Hh])[Tt][Tt][Pp][Ss]?://|[Ww](?<![\w][Ww])[Ww][Ww]\.)[^\s<>\"'`]+[^\s<>\"'`.,;:!?)\]]")


def _urls(scan: Scan) -> Iterator[tuple[int, int]]:
    """URLs, matched only where one can start: 4 or 5 characters before a "://" (http, https) or at
    a "www." (the lower-cased text keeps the offsets when it is ASCII); a scan of every h and w is slower."""
    text = scan.text
    if not text.isascii():
        yield from ((m.start(), m.end()) for m in _URL.finditer(text))
        return
    starts: set[int] = set()
    for anchor, source, back in (("://", text, (4, 5)), ("www.", scan.lower, (0,))):
        at = source.find(anchor)
        while at != -1:
            starts.update(at - b for b in back if at >= b)
            at = source.find(anchor, at + len(anchor))
    end = 0
    for start in sorted(starts):
        m = _URL.match(text, start) if start >= end else None
        if m:
            yield m.start(), m.end()
            end = m.end()


_BITCOIN = _pattern(r"[13](?<![\w][13])[1-9A-HJ-NP-Za-km-z]{25,34}(?![\w])", _bitcoin)
_BECH32 = _pattern(r"bc1(?<![\w]bc1)[a-z0-9]{39,59}(?![\w])", _bitcoin, needs=("bc1",))
FINDERS: dict[str, Finder] = {
    "EMAIL_ADDRESS": _pattern(r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-])",
                              needs=("@",)),
    "PHONE_NUMBER": _phones,
    "CREDIT_CARD": _pattern(r"[0-9](?<![0-9-][0-9])(?:[ -]?[0-9]){12,18}(?![0-9-])", _card, shape="0" * 13),
    "US_SSN": _pattern(r"[0-9](?<![0-9-][0-9])[0-9]{2}([- ])[0-9]{2}\1[0-9]{4}(?![0-9-])", _ssn, shape="0" * 9),
    "US_ITIN": _pattern(r"9(?<![0-9-]9)[0-9]{2}([- ])[0-9]{2}\1[0-9]{4}(?![0-9-])", _itin),
    "IBAN_CODE": _pattern(r"[A-Z](?<![A-Za-z0-9][A-Z])[A-Z][0-9]{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?(?![A-Za-z0-9])", _iban,
                          shape="AA00"),
    "IP_ADDRESS": _ips,
    "URL": _urls,
    "US_BANK_NUMBER": _after_cue(("account", "acct", "bank", "routing", "checking", "savings", "a/c"), r"[0-9]{8,17}", shape="0" * 8),
    "US_PASSPORT": _after_cue(("passport",), r"[A-Z]?[0-9]{8,9}", shape="0" * 8),
    "US_DRIVER_LICENSE": _after_cue(("driver'?s? licen[cs]e", "driving licen[cs]e", "dl"), r"[A-Z][0-9]{6,12}|[0-9]{7,9}", shape="0" * 6),
    "CRYPTO": lambda scan: (span for find in (_BITCOIN, _BECH32) for span in find(scan)),
    "CVV": _after_cue(("cvv2?", "cvc2?", "security code", "card verification"), r"[0-9]{3,4}", gap=12, shape="000"),
    "BIC_SWIFT": _after_cue(("bic", "swift"), r"[A-Z]{4}[A-Z]{2}[A-Z0-9]{2}(?:[A-Z0-9]{3})?", gap=15),
    "UK_NHS": _after_cue(("nhs",), r"[0-9]{3}[ -]?[0-9]{3}[ -]?[0-9]{4}", _nhs, shape="0" * 10),
    "UK_NINO": _pattern(r"[A-CEGHJ-PR-TW-Z](?<![A-Za-z0-9][A-Z])[A-CEGHJ-NPR-TW-Z](?<!BG|GB|NK|KN|TN|NT|ZZ) ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[A-D](?![A-Za-z0-9])",
                        shape="AA000000A"),
}
SUPPORTED = tuple(FINDERS)

_BASE64 = re.compile(r"(?<![A-Za-z0-9+/=])[A-Za-z0-9+/]{12,}={0,2}(?![A-Za-z0-9+/=])")
_HEX = re.compile(r"(?<![0-9A-Za-z])(?:[0-9A-Fa-f]{2}){8,}(?![0-9A-Za-z])")
_PERCENT = re.compile(r"[A-Za-z0-9._~+-]*(?:%[0-9A-Fa-f]{2}[A-Za-z0-9._~+-]*)+")


def _decoded(chunk: str, kind: str) -> str | None:
    try:
        if kind == "base64":
            if len(chunk) % 4:
                return None
            raw = base64.b64decode(chunk, validate=True)
        elif kind == "hex":
            raw = binascii.unhexlify(chunk)
        else:
            return unquote(chunk, errors="strict")
        text = raw.decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    return text if text.isprintable() else None


# Every entity a finder detects holds a digit or an "@" but URL ("://", "www."), IPv6 written in
# hex letters (":cafe:") and BIC_SWIFT (its cue word); text that is not ASCII is normalised first.
_MAY_HOLD = re.compile(r"[0-9@]|://|www\.|:[0-9a-f]{0,4}:|\b(?:bic|swift)\b", re.IGNORECASE)


def may_hold(text: str) -> bool:
    """Whether ``text`` (as written, not normalised) can hold PII of any entity: most text cannot."""
    return not text.isascii() or _MAY_HOLD.search(text) is not None


def find(text: str, entities: tuple[str, ...] | list[str], *, encoded: bool = False) -> list[Hit]:
    """The PII of ``entities`` in ``text`` (already normalised), without overlaps, in order."""
    scan = Scan(text)
    hits = [Hit(s, e, entity, text[s:e]) for entity in entities if entity in FINDERS for s, e in FINDERS[entity](scan)]
    if encoded:
        for kind, pattern in (("base64", _BASE64), ("hex", _HEX), ("percent", _PERCENT)):
            for m in pattern.finditer(text):
                plain = _decoded(m.group(0), kind)
                inner = find(plain, entities) if plain else []
                if inner and plain != m.group(0):
                    hits.append(Hit(m.start(), m.end(), inner[0].entity, m.group(0), encoded=True))
    hits.sort(key=lambda h: (h.start, -(h.end - h.start)))
    kept: list[Hit] = []
    for hit in hits:
        if not kept or hit.start >= kept[-1].end:
            kept.append(hit)
        elif hit.end - hit.start > kept[-1].end - kept[-1].start and hit.start == kept[-1].start:
            kept[-1] = hit
    return kept


def masked(text: str, hits: list[Hit]) -> str:
    out, at = [], 0
    for hit in hits:
        out += [text[at : hit.start], hit.mask]
        at = hit.end
    return "".join([*out, text[at:]])
