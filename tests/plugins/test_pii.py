"""The pii check: labelled cases (precision/recall printed), kinds and counts,
never values, and its interplay with redaction."""

from __future__ import annotations

import pytest

from chainsight.framework.model import Span
from chainsight.plugins import detectors
from chainsight.plugins.pii import CONFIG_SCHEMA, PiiCheck
from chainsight.plugins.redaction import ATTRIBUTE, Redactor
from tests.plugins.cases import precision_recall
from tests.plugins.cases.pii_cases import CASES


def llm_span(inputs: object = None, outputs: object = None, kind: str = "llm") -> Span:
    span = Span("model", kind, parent_id="p" * 16)
    span.inputs, span.outputs, span.status = inputs, outputs, "ok"
    return span


def test_labelled_cases_precision_recall() -> None:
    assert len(CASES) >= 20
    check = PiiCheck()
    pairs = []
    kind_pairs = []
    misses: list[str] = []
    for text, expected in CASES:
        (score,) = check.check_span(llm_span(outputs=text)) or []
        found = frozenset() if score.label == "clean" else frozenset(score.label.split(","))
        pairs.append((bool(expected), not score.passed))
        for kind in (*detectors.PII_KINDS, *detectors.SECRET_KINDS):
            kind_pairs.append((kind in expected, kind in found))
        if found != expected:
            misses.append(f"{text!r}: expected {sorted(expected)}, got {sorted(found)}")
    p, r, tp, fp, fn = precision_recall(pairs)
    kp, kr, *_ = precision_recall(kind_pairs)
    print(f"\npii: {len(CASES)} cases, precision {p:.2f}, recall {r:.2f} (tp={tp} fp={fp} fn={fn}); "
          f"per kind: precision {kp:.2f}, recall {kr:.2f}")
    for miss in misses:
        print("  miss:", miss)
    assert p >= 0.9 and r >= 0.9
    assert len(misses) <= 2
    assert kp >= 0.9 and kr >= 0.9


def test_score_reports_kinds_and_counts_never_values() -> None:
    span = llm_span(inputs={"messages": [{"role": "user", "content": "I am bob@example.com"}]},
                    outputs="Noted: bob@example.com and alice@example.org, phone +1 415 555 0134")
    (score,) = PiiCheck().check_span(span) or []
    assert score.name == "pii" and score.source == "check"
    assert score.value == 1.0 and score.passed is False
    assert score.label == "email,phone"
    assert "email x3" in (score.comment or "") and "phone x1" in (score.comment or "")
    assert "example.com" not in (score.comment or "") and "555" not in (score.comment or "")


def test_clean_span_passes_and_other_spans_are_skipped() -> None:
    (score,) = PiiCheck().check_span(llm_span(outputs="nothing to see")) or []
    assert (score.value, score.label, score.passed) == (0.0, "clean", True)
    assert PiiCheck().check_span(llm_span(outputs="x@example.com", kind="tool")) is None
    root = Span("root", "chain")
    root.outputs = "x@example.com"
    assert PiiCheck().check_span(root) is not None  # roots are judged
    assert PiiCheck(span_kinds=("tool",)).check_span(llm_span(outputs="x@example.com", kind="tool"))


def test_counts_what_redaction_masked_plus_what_is_left() -> None:
    # redaction masks emails only (phone switched off): the check sees the
    # recorded email count and finds the phone in the remaining text.
    enabled = tuple(k for k in detectors.SWITCHES if k != "phone")
    span = llm_span(inputs="mail a@example.com, b@example.com", outputs="call 415-555-0134")
    Redactor(enabled).redact_span(span)
    assert span.attributes == {ATTRIBUTE: {"email": 2}}
    assert "example.com" not in str(span.inputs)
    (score,) = PiiCheck().check_span(span) or []
    assert score.label == "email,phone"
    assert "email x2" in (score.comment or "") and "phone x1" in (score.comment or "")
    assert "2 masked by redaction" in (score.comment or "")


def test_kinds_option_limits_what_counts() -> None:
    check = PiiCheck(kinds=("email",))
    (score,) = check.check_span(llm_span(outputs="call 415-555-0134")) or []
    assert score.passed
    span = llm_span(outputs="x")
    span.attributes = {ATTRIBUTE: {"phone": 1, "email": 1}}
    (score,) = check.check_span(span) or []
    assert score.label == "email"


def test_config_schema_rejects_unknown_kinds() -> None:
    import jsonschema

    jsonschema.Draft202012Validator(CONFIG_SCHEMA).validate({"kinds": ["email", "secrets"]})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(CONFIG_SCHEMA).validate({"kinds": ["emails"]})
