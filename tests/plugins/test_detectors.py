"""Shared detectors: validators, overlap priority, and no catastrophic backtracking."""

from __future__ import annotations

import re
import sys
import time

import pytest

from chainsight.plugins import detectors
from chainsight.plugins.detectors import count, dni_valid, find, iban_valid, luhn_valid, redact


def test_validators() -> None:
    assert luhn_valid("4111 1111 1111 1111") and not luhn_valid("4111 1111 1111 1112")
    assert not luhn_valid("0000 0000 0000 0000")
    assert iban_valid("GB82 WEST 1234 5698 7654 32") and not iban_valid("GB83 WEST 1234 5698 7654 32")
    assert not iban_valid("XX82WEST12345698765432")
    assert dni_valid("12345678Z") and not dni_valid("12345678A")


def test_secret_wins_overlap_and_values_never_in_counts() -> None:
    text = "key sk-live-4111111111111111abcdefghij"  # digits inside a key are not a card
    assert count(text) == {"api_key": 1}
    masked, counts = redact("a@b.example and c@d.example")
    assert masked == "[redacted:email] and [redacted:email]" and counts == {"email": 2}


def test_redaction_placeholders_are_not_found_again() -> None:
    once, _ = redact("password=hunter2hunter2 Bearer abcdefghijklmnop1234 x@y.example")
    assert count(once) == {}
    assert redact(once)[0] == once


def test_detectors_for_rejects_unknown_switches() -> None:
    assert {d.kind for d in detectors.detectors_for(["email"])} == {"email"}
    with pytest.raises(ValueError, match="unknown detector kinds"):
        detectors.detectors_for(["emails"])


ADVERSARIAL = [
    "a" * 50_000 + "@",
    ("a." * 20_000) + "@",
    "x@" + "a-" * 20_000,
    "1 " * 30_000,
    "1-" * 30_000,
    "+" + "1 " * 20_000,
    "sk-" + "-" * 50_000,
    "-----BEGIN RSA PRIVATE KEY-----" + "A" * 50_000,
    "eyJ" + "a" * 30_000 + ".eyJ" + "b" * 30_000,
    "password=" * 10_000,
    "1." * 30_000,
    "a:" * 30_000 + "::",
    "AB 12 " * 20_000,
    "?" + "a_" * 25_000 + "=",
    "a://" + "b" * 50_000 + ":",
    "http://a:" * 6_000,
    "&token=" * 8_000,
    "a" * 30 + "://" + ":" * 50_000 + "@",
    "a+" * 20_000 + "://u:p@h",
]


@pytest.mark.parametrize("text", ADVERSARIAL, ids=range(len(ADVERSARIAL)))
def test_no_catastrophic_backtracking(text: str) -> None:
    started = time.perf_counter()
    find(text)
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0, f"{elapsed:.2f}s on a {len(text)}-char adversarial input"


def _reference_find(text: str) -> list[tuple[str, int, int]]:
    """find() without the hint, digit-count and needs pre-checks: every pattern on every text."""
    import dataclasses

    plain = tuple(dataclasses.replace(d, hints=(), digits=0, needs="") for d in detectors.DETECTORS)
    return [(f.kind, f.start, f.end) for f in detectors.find(text, plain)]


def test_hint_prechecks_never_change_what_is_found() -> None:
    from tests.plugins.cases.pii_cases import CASES

    texts = [text for text, _ in CASES] + [t[:5000] for t in ADVERSARIAL] + [
        "Password: hunter2hunter2", "AUTHORIZATION: Bearer abcdefghijklmnopqrstu",
        "fe80::1ff:fe23:4567:890a", "10.0.0.1 and 2001:db8::8a2e:370:7334",
        "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY1",
        # just enough digits for each digit-counting detector
        "+1 415 5550", "(415) 555-0134", "SSN 123-45-6789", "AB 12 34 56 C", "12345678Z",
        "1.2.3.4", "addr ::1", "GB82WEST12345698765432", "4222222222222", "4111-1111-1111-1111",
        # any-case hints in other spellings: long s, Kelvin sign, upper case
        "pa\u017fsword=hunter2hunter2", "api_\u212aey: abcdef123456", "BEARER abcdefghijklmnopqrstu",
        "what is item 123?", "item 123 is a thing",
        # the needs pre-checks at their edges
        "GB82 WEST 1234 5698 7654 32", "078-05-1120", "AB123456C", "AB 12 34 56 D", "12345678-Z",
        "192.168.0.1", "1.1.1.1", "version 1.2.3.4", "ab 12 34 56 e", "1234567z",
        # credentials in URLs
        "https://host/v1?api_key=abc123secret&x=1", "https://user:pass@host/", "?SIG=abc", "&Signature=x",
        "https://h/cb#access_token=xyz&state=1", "redis://:pw@localhost:6379", "a?X-Amz-Credential=AK/2020",
    ]
    assert len(texts) > 40
    for text in texts:
        fast = [(f.kind, f.start, f.end) for f in detectors.find(text)]
        assert fast == _reference_find(text), text[:80]


def test_casefolded_gates_see_every_ignorecase_spelling() -> None:
    # Any-case hints are looked for casefolded in the casefolded text (see
    # Detector.gate): every character that IGNORECASE equates with a hint
    # character must casefold to that character.
    everything = "".join(map(chr, range(sys.maxunicode + 1)))
    chars = {c for d in detectors.DETECTORS if d.lower for h in d.hints for c in h}
    assert chars
    for char in chars:
        for same in re.findall(re.escape(char), everything, re.IGNORECASE):
            assert same.casefold() == char.casefold(), (char, same)


def test_scanner_memo_matches_find_and_stays_bounded() -> None:
    from tests.plugins.cases.pii_cases import CASES

    scanner = detectors.Scanner(detectors.DETECTORS, size=8)
    for _ in range(2):  # the second pass is served from the memo where kept
        for text, _kinds in CASES:
            assert list(scanner.find(text)) == detectors.find(text)
            assert scanner.redact(text) == detectors.redact(text)
    assert len(scanner._memo) <= 8
    long_text = "mail me at a.b@example.com " * 5000
    assert scanner.count(long_text)["email"] == 5000
    assert long_text not in scanner._memo  # too long to keep


@pytest.mark.parametrize(("text", "masked"), [
    ("https://host/v1?api_key=abc123secret&x=1", "https://host/v1?api_key=[redacted:credential]&x=1"),
    ("https://user:pass@host/", "https://user:[redacted:credential]@host/"),
    ("postgresql+psycopg://app:S3cr3t!@db:5432/x", "postgresql+psycopg://app:[redacted:credential]@db:5432/x"),
    ("redis://:hunter2@localhost:6379/0", "redis://:[redacted:credential]@localhost:6379/0"),
    ("see https://h/a?q=1&token=abc#top", "see https://h/a?q=1&token=[redacted:credential]#top"),
    ("https://h/cb#access_token=xyz&state=1", "https://h/cb#access_token=[redacted:credential]&state=1"),
    ("https://h/o?X-Amz-Signature=deadbeef&X-Amz-Credential=AKID%2F2020",
     "https://h/o?X-Amz-Signature=[redacted:credential]&X-Amz-Credential=[redacted:credential]"),
    ("wss://h/?apikey=k1&sig=s1&password=p1&secret=s2&auth=a1",
     "wss://h/?apikey=[redacted:credential]&sig=[redacted:credential]&password=[redacted:credential]"
     "&secret=[redacted:credential]&auth=[redacted:credential]"),
])
def test_credentials_in_urls_are_masked(text: str, masked: str) -> None:
    out, counts = redact(text)
    assert out == masked
    assert set(counts) == {"credential"}
    assert count(out) == {}  # a mask is not found again


@pytest.mark.parametrize("text", [
    "https://example.com:8080/path?q=1&page=2", "http://h/?monkey=1&turkey=2", "key=value in prose",
    "mailto:someone", "a ratio of 3:4@home",
])
def test_urls_without_credentials_are_left_alone(text: str) -> None:
    assert count(text) == {}
