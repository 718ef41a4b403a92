"""The length check: bounds in characters and tokens, per span name or tag."""

from __future__ import annotations

from framework.model import Span
from plugins.length import LengthCheck


def answer(text: object, name: str = "model", tags: list[str] | None = None, tokens: int | None = None) -> Span:
    span = Span(name, "llm", parent_id="p" * 16)
    span.outputs, span.status, span.tags, span.output_tokens = text, "ok", tags, tokens
    return span


def test_default_bounds() -> None:
    check = LengthCheck.from_config({})
    (ok,) = check.check_span(answer("Hello there")) or []
    assert (ok.value, ok.label, ok.passed) == (11.0, "ok", True)
    (empty,) = check.check_span(answer("")) or []
    assert (empty.label, empty.passed) == ("too_short", False)
    (long,) = check.check_span(answer("x" * 20001)) or []
    assert long.label == "too_long" and "20001 chars > max 20000" in (long.comment or "")


def test_tokens_reported_or_estimated() -> None:
    check = LengthCheck.from_config({"min_chars": 0, "max_tokens": 5})
    (score,) = check.check_span(answer("one two three", tokens=9)) or []
    assert score.label == "too_long" and "9 tokens > max 5" in (score.comment or "")
    (score,) = check.check_span(answer("a" * 40)) or []  # ~10 tokens estimated
    assert score.label == "too_long" and "~10 tokens" in (score.comment or "")


def test_rules_by_span_name_and_tag_first_match_wins() -> None:
    check = LengthCheck.from_config({
        "min_chars": 1, "max_chars": 1000,
        "rules": [{"span": "summar*", "min_chars": 50}, {"tag": "terse", "max_chars": 10}],
    })
    (score,) = check.check_span(answer("short", name="summarize")) or []
    assert score.label == "too_short" and "min 50" in (score.comment or "")
    (score,) = check.check_span(answer("a" * 20, tags=["terse"])) or []
    assert score.label == "too_long"
    (score,) = check.check_span(answer("a" * 20, name="other")) or []
    assert score.label == "ok"


def test_skips_errors_non_answers_and_missing_output() -> None:
    check = LengthCheck.from_config({})
    failed = answer("x")
    failed.status = "error"
    assert check.check_span(failed) is None
    assert check.check_span(answer(None)) is None
    tool = Span("t", "tool", parent_id="p" * 16)
    tool.outputs = ""
    assert check.check_span(tool) is None
