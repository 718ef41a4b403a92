"""PII and secret detectors: the one source of truth for ``pii`` and ``redaction``.

Each :class:`Detector` is a precompiled pattern plus an optional validator
(python-stdnum's Luhn, IBAN and DNI checks, ``ipaddress`` for IP addresses...).
:func:`find` runs them in priority order and drops a match that overlaps one
already accepted, so a card number inside an API key is reported once, as the
key.

Kinds (what scores and ``chainsight.redacted`` report):

* PII: ``email``, ``phone``, ``credit_card``, ``iban``, ``national_id``
  (US SSN, UK NINO, Spanish DNI), ``ip_address`` (IPv4, IPv6).
* Secrets (one switch, ``secrets``): ``private_key``, ``api_key`` (``sk-...``,
  Stripe, Google ``AIza...``), ``aws_key``, ``github_token``, ``slack_token``,
  ``jwt``, ``bearer_token``, ``credential`` (``password=...``, ``api_key: ...``,
  a URL's password and secret-named query parameters: ``?api_key=...``).

Every pattern is linear: quantifiers are bounded or run over classes that
cannot overlap the next token, so no input backtracks catastrophically
(tests/plugins/test_detectors.py times adversarial inputs).
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from stdnum import iban, luhn
from stdnum.es import dni

from chainsight.framework.model import REDACTION_PLACEHOLDER
from chainsight.plugins.text import any_of

SECRETS: Final = "secrets"
PII_KINDS: Final[tuple[str, ...]] = (
    "email", "phone", "credit_card", "iban", "national_id", "ip_address",
)
SECRET_KINDS: Final[tuple[str, ...]] = (
    "private_key", "api_key", "aws_key", "github_token", "slack_token", "jwt",
    "bearer_token", "credential",
)
SWITCHES: Final[tuple[str, ...]] = (*PII_KINDS, SECRETS)
"""What a user turns on or off: each PII kind, and all secrets together."""


@dataclass(frozen=True, slots=True)
class Detector:
    kind: str
    pattern: re.Pattern[str]
    validate: Callable[[str], bool] | None = None
    group: int = 0  # the group that is the sensitive value (0: the whole match)
    # Necessary conditions, checked before the pattern runs: most text holds
    # none of these literals, and a substring test costs far less than a scan.
    hints: tuple[str, ...] = ()  # one of these literals must occur (any case if lower)
    lower: bool = False
    # The text must hold at least this many digits (``\d``): what the pattern
    # and the validator together need (a card number has 13).
    digits: int = 0
    # A pattern every match contains (a cheap search that rejects most text;
    # "" for none): for the detectors without literal hints.
    needs: str = ""

    # One compiled search for the hints. Any-case hints are searched for,
    # casefolded, in the casefolded text: a case-sensitive search is several
    # times faster than an IGNORECASE one, and every character that
    # IGNORECASE equates with a hint character casefolds to it (tested).
    gate: re.Pattern[str] | None = field(default=None, init=False, compare=False, repr=False)
    need: re.Pattern[str] | None = field(default=None, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.hints:
            object.__setattr__(self, "gate", any_of(self.gate_hints))
        if self.needs:
            object.__setattr__(self, "need", re.compile(self.needs))

    @property
    def gate_hints(self) -> tuple[str, ...]:
        """The hints as ``gate`` looks for them (casefolded when ``lower``)."""
        return tuple(h.casefold() for h in self.hints) if self.lower else self.hints

    @property
    def switch(self) -> str:
        return SECRETS if self.kind in SECRET_KINDS else self.kind


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str
    start: int
    end: int


# ---- validators ------------------------------------------------------------

def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


def luhn_valid(number: str) -> bool:
    """A card number: 13 to 19 digits, not all the same, with a valid Luhn checksum."""
    digits = _digits(number)
    return 13 <= len(digits) <= 19 and len(set(digits)) > 1 and luhn.is_valid(digits)


def iban_valid(text: str) -> bool:
    """ISO 13616: the registry's structure for its country, and the mod-97 check.

    Each country's national check digits are not checked: a mistyped one is
    still somebody's account number."""
    return iban.is_valid(text, check_country=False)


def dni_valid(text: str) -> bool:
    """Spanish DNI: 8 digits and the check letter."""
    return dni.is_valid(text)


def phone_valid(text: str) -> bool:
    digits = _digits(text)
    low = 8 if text.startswith("+") else 9
    if not low <= len(digits) <= 15 or len(set(digits)) <= 2:
        return False
    # ISO dates and times are not phone numbers.
    return _DATE_LIKE.search(text) is None


_DATE_LIKE: Final = re.compile(r"(?:19|20)\d\d[-./](?:0[1-9]|1[0-2])[-./](?:0[1-9]|[12]\d|3[01])")


def ip_valid(text: str) -> bool:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    if address.version == 6:
        return any(c.isdigit() for c in text) and text.count(":") >= 2
    return True


def api_key_valid(text: str) -> bool:
    """Real keys are random: they have digits (``sk-learn-docs-page`` is no key)."""
    return sum(c.isdigit() for c in text) >= 2


# ---- patterns --------------------------------------------------------------

_HEX4 = r"[0-9A-Fa-f]{1,4}"

DETECTORS: Final[tuple[Detector, ...]] = (
    # secrets first: they win overlaps
    Detector("private_key", re.compile(
        r"-----BEGIN[A-Z ]{0,40}PRIVATE KEY(?: BLOCK)?-----"
        r"(?:[\s\S]{0,20000}?-----END[A-Z ]{0,40}PRIVATE KEY(?: BLOCK)?-----|[A-Za-z0-9+/=\s]{0,20000})"
    ), hints=("-----BEGIN",)),
    Detector("aws_key", re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA)[A-Z0-9]{16}(?![A-Z0-9])"),
             hints=("AKIA", "ASIA", "AGPA", "AIDA", "AROA", "AIPA", "ANPA", "ANVA")),
    Detector("aws_key", re.compile(
        r"(?i)aws_?secret_?(?:access_?)?key[\"']?\s{0,3}[:=]\s{0,3}[\"']?([A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])"
    ), group=1, hints=("secret",), lower=True),
    Detector("github_token", re.compile(r"(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})"),
             hints=("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_")),
    Detector("slack_token", re.compile(r"(?<![A-Za-z0-9_])xox[abposr]-[A-Za-z0-9-]{10,250}"), hints=("xox",)),
    Detector("jwt", re.compile(r"(?<![\w-])eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"), hints=("eyJ",)),
    Detector("api_key", re.compile(r"(?<![\w-])sk-[A-Za-z0-9_-]{20,400}"), api_key_valid, hints=("sk-",)),
    Detector("api_key", re.compile(r"(?<![\w-])(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{16,250}"), hints=("_live_", "_test_")),
    Detector("api_key", re.compile(r"(?<![\w-])AIza[0-9A-Za-z_-]{35}(?![\w-])"), hints=("AIza",)),
    Detector("bearer_token", re.compile(r"(?i)\bbearer\s{1,5}([A-Za-z0-9._~+/-]{16,2000}=*)"), hints=("bearer",), lower=True),
    # Credentials in URLs (a litellm ``api_base``, a connection string): the
    # password of ``scheme://user:PASSWORD@host`` and the value of a
    # secret-named query or fragment parameter (``?api_key=VALUE&...``; a
    # value that begins with "[" is left, so a mask is not found again). Before
    # the generic ``credential`` pattern, which would take the rest of the URL.
    Detector("credential", re.compile(
        r"(?i)(?<![a-z0-9+.-])[a-z][a-z0-9+.-]{0,30}://[^\s/?#@:]{0,256}:([^\s/?#@\[][^\s/?#@]{0,255})@"
    ), group=1, hints=("://",)),
    Detector("credential", re.compile(
        r"(?i)[?&;#](?:[\w.-]{0,40}[_.-])?"
        r"(?:token|key|apikey|sig|signature|password|passwd|pwd|passphrase|secret|auth|authorization|"
        r"credentials?|session)=([^\s&#\"'<>\[][^\s&#\"'<>]{0,1999})"
    ), group=1, hints=("token", "key", "pass", "pwd", "secret", "auth", "cred", "sess", "g=", "ure="),
        lower=True),  # no "i" in any-case hints: "İ" matches it, casefolded it does not
    Detector("credential", re.compile(
        r"(?i)\b(?:password|passwd|pwd|passphrase|api[_-]?key|secret[_-]?key|client[_-]?secret|"
        r"access[_-]?token|auth[_-]?token|refresh[_-]?token|private[_-]?key)[\"']?\s{0,3}[:=]\s{0,3}[\"']?"
        r"([^\s\"',;)}\]\[][^\s\"',;)}\]]{5,199})"
    ), group=1, hints=("pass", "pwd", "key", "secret", "token"), lower=True),
    # PII
    Detector("email", re.compile(
        r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){1,8}[A-Za-z]{2,24}(?![\w-])"
    ), hints=("@",)),
    Detector("iban", re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![A-Za-z0-9])"), iban_valid, digits=2,
             needs=r"[A-Z][A-Z]\d\d"),
    Detector("credit_card", re.compile(r"(?<![\d.-])(?:\d[ -]?){12,18}\d(?![\d-]|\.\d)"), luhn_valid, digits=13),
    Detector("national_id", re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])"), digits=9,
             needs=r"\d-\d\d-\d"),
    Detector("national_id", re.compile(r"(?<![A-Za-z0-9])[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D](?![A-Za-z0-9])"), digits=6,
             needs=r"\d ?[A-D]"),
    Detector("national_id", re.compile(r"(?<![\w-])\d{8}-?[A-Z](?![\w-])"), dni_valid, digits=8,
             needs=r"\d-?[A-Z]"),
    Detector("phone", re.compile(
        r"(?<![\w+.-])(?:"
        r"\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){1,4}"  # international
        r"|\(\d{3}\) ?\d{3}[ .-]\d{4}"  # (415) 555-0134
        r"|\d{3}[.-]\d{3}[.-]\d{4}"  # 415-555-0134
        r"|0\d{1,4}(?:[ /.-]\d{2,8}){1,4}"  # national trunk prefix: 030 1234567, 06 12 34 56 78
        r")(?![\w-]|\.\d)"
    ), phone_valid, digits=8),
    Detector("ip_address", re.compile(
        r"(?<![\w.])(?<![Vv]ersion )(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\w]|\.\d)"
    ), ip_valid, digits=4, needs=r"\d\.\d"),
    Detector("ip_address", re.compile(
        rf"(?<![\w:])(?:(?:{_HEX4}:){{7}}{_HEX4}|(?:{_HEX4}:){{1,6}}:(?:{_HEX4}(?::{_HEX4}){{0,5}})?|::(?:{_HEX4}(?::{_HEX4}){{0,6}}))(?![\w:])"
    ), ip_valid, hints=(":",), digits=1),
)

SENSITIVE_KEY: Final = re.compile(
    r"(?i)^(?:[\w.-]{0,40}[_.-])?(?:password|passwd|pwd|passphrase|secret|client[_-]?secret|"
    r"secret[_-]?key|api[_-]?key|apikey|(?:access|auth|api|id|refresh|bearer|session)[_-]?token|"
    r"authorization|proxy-authorization|cookie|set-cookie|private[_-]?key)$"
)
"""Mapping keys whose string values are secrets whatever they look like
(``{"api_key": "abc"}``, an ``Authorization`` header)."""

_MIN_LEN: Final = 6  # shorter strings cannot hold any of the above
_DIGIT: Final = re.compile(r"\d")


def detectors_for(enabled: Collection[str]) -> tuple[Detector, ...]:
    """The detectors whose switch (PII kind or ``secrets``) is in ``enabled``."""
    unknown = set(enabled) - set(SWITCHES)
    if unknown:
        raise ValueError(f"unknown detector kinds: {sorted(unknown)}; known: {list(SWITCHES)}")
    return tuple(d for d in DETECTORS if d.switch in enabled)


@dataclass(frozen=True, slots=True)
class _Plan:
    """One detector set, arranged for :func:`find`."""

    detectors: tuple[Detector, ...]
    # Every hint of the set in two searches (exact ones in the text, any-case
    # ones in the casefolded text): when both fail, no detector with hints can
    # match, and only ``unhinted`` (the digit-counting ones) need to run.
    exact_hints: re.Pattern[str] | None
    folded_hints: re.Pattern[str] | None
    unhinted: tuple[Detector, ...]


def _make_plan(detectors: tuple[Detector, ...]) -> _Plan:
    exact = [h for d in detectors if not d.lower for h in d.gate_hints]
    folded = [h for d in detectors if d.lower for h in d.gate_hints]
    return _Plan(
        detectors,
        any_of(exact) if exact else None,
        any_of(folded) if folded else None,
        tuple(d for d in detectors if not d.hints),
    )


_PLANS: Final[dict[int, _Plan]] = {}


def _plan(detectors: tuple[Detector, ...]) -> _Plan:
    # Keyed by identity: hashing a detector set costs more than a scan. The
    # plan holds its tuple, so an id is not reused while its entry lives.
    plan = _PLANS.get(id(detectors))
    if plan is None or plan.detectors is not detectors:
        if len(_PLANS) >= 256:
            _PLANS.clear()
        plan = _PLANS[id(detectors)] = _make_plan(detectors)
    return plan


def find(text: str, detectors: Iterable[Detector] = DETECTORS) -> list[Finding]:
    """Non-overlapping findings in ``text``, sorted by position."""
    if len(text) < _MIN_LEN:
        return []
    return _find(text, _plan(tuple(detectors)))


def _find(text: str, plan: _Plan) -> list[Finding]:
    folded: str | None = None
    candidates = plan.unhinted
    if plan.exact_hints is not None and plan.exact_hints.search(text) is not None:
        candidates = plan.detectors
    elif plan.folded_hints is not None:
        folded = text.casefold()
        if plan.folded_hints.search(folded) is not None:
            candidates = plan.detectors
    accepted: list[Finding] = []
    digits: int | None = None
    for detector in candidates:
        if detector.digits:
            if digits is None:
                digits = len(_DIGIT.findall(text))
            if digits < detector.digits:
                continue
        if detector.need is not None and detector.need.search(text) is None:
            continue
        gate = detector.gate
        if gate is not None:
            if detector.lower:
                if folded is None:
                    folded = text.casefold()
                if gate.search(folded) is None:
                    continue
            elif gate.search(text) is None:
                continue
        for match in detector.pattern.finditer(text):
            start, end = match.span(detector.group)
            if start < 0:
                continue
            value = match.group(detector.group)
            if detector.validate is not None and not detector.validate(value):
                continue
            if any(start < f.end and f.start < end for f in accepted):
                continue
            accepted.append(Finding(detector.kind, start, end))
    accepted.sort(key=_start)
    return accepted


def _start(finding: Finding) -> int:
    return finding.start


def count(text: str, detectors: Iterable[Detector] = DETECTORS) -> Counter[str]:
    """How many of each kind ``text`` holds (never the values)."""
    return Counter(f.kind for f in find(text, detectors))


DEFAULT_REPLACEMENT: Final = REDACTION_PLACEHOLDER


def redact(
    text: str,
    detectors: Iterable[Detector] = DETECTORS,
    replacement: str = DEFAULT_REPLACEMENT,
) -> tuple[str, Counter[str]]:
    """``text`` with every finding replaced (``{kind}`` is filled in), and the counts."""
    return mask(text, find(text, detectors), replacement)


def mask(text: str, findings: Sequence[Finding], replacement: str = DEFAULT_REPLACEMENT
         ) -> tuple[str, Counter[str]]:
    """``text`` with the given findings replaced, and their counts."""
    if not findings:
        return text, Counter()
    parts: list[str] = []
    last = 0
    for f in findings:
        parts.append(text[last:f.start])
        parts.append(replacement.replace("{kind}", f.kind))
        last = f.end
    parts.append(text[last:])
    return "".join(parts), Counter(f.kind for f in findings)


_MEMOS: Final[dict[tuple[tuple[Detector, ...], int, int], dict[str, tuple[Finding, ...]]]] = {}


class Scanner:
    """One detector set with a memo of recent whole-string results.

    The same text recurs across the spans of one trace (a prompt's output is
    the model's input; the model's answer is the parser's input and the
    chain's output), so scanning each string once per worker saves most of
    the work on LangChain traces. Scanners of the same detector set share one
    memo: redaction scans a span's strings, then the pii check reads the same
    strings. Bounded: cleared when full; strings longer than ``max_len`` are
    not kept. Used on pipeline workers (each memo operation is one dict
    operation, atomic under the GIL, so two observers' workers may share it).
    """

    def __init__(self, detectors: tuple[Detector, ...], size: int = 4096, max_len: int = 65536) -> None:
        self.detectors = detectors
        self._plan = _plan(detectors)
        self._memo = _MEMOS.setdefault((detectors, size, max_len), {})
        self._size = size
        self._max_len = max_len

    def find(self, text: str) -> tuple[Finding, ...]:
        if len(text) < _MIN_LEN:
            return ()
        hit = self._memo.get(text)
        if hit is None:
            hit = tuple(_find(text, self._plan))
            if len(text) <= self._max_len:
                if len(self._memo) >= self._size:
                    self._memo.clear()
                self._memo[text] = hit
        return hit

    def count(self, text: str) -> Counter[str]:
        return Counter(f.kind for f in self.find(text))

    def redact(self, text: str, replacement: str = DEFAULT_REPLACEMENT) -> tuple[str, Counter[str]]:
        return mask(text, self.find(text), replacement)
